"""Daemon: drop-to-swap latency, idle CPU and memory, memory under a 10,000-file burst.

The real ``mlupdated run`` runs on temporary workspaces around the default model; the
benchmark talks to it as a user would (files, the manifest, ``mlupdated status``, its
JSON log) and reads its CPU time and memory from ``/proc``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import Section, Target, fmt, median, progress, varied_photo

DROP_SIZE = 20
DROPS = 3
QUICK_DROPS = 1
QUIET_SECONDS = 2.0
STABILITY_SECONDS = 0.5
IDLE_SECONDS = 60.0
QUICK_IDLE_SECONDS = 5.0
BURST_FILES = 10_000
QUICK_BURST_FILES = 300
SWAP_SLACK_GOAL = 1.0
IDLE_CPU_GOAL = 0.5  # percent of one CPU
IDLE_RSS_GOAL = 150.0  # MB
BURST_GROWTH_GOAL = 50.0  # MB
WAIT_TIMEOUT = 600.0
# The burst is measured until every file is queued, or this long.
BURST_TIMEOUT = 240.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run(*, quick: bool, sources: list[np.ndarray], env: dict[str, str]) -> Section:
    """Measure and return the daemon section."""
    drops = QUICK_DROPS if quick else DROPS
    idle_seconds = QUICK_IDLE_SECONDS if quick else IDLE_SECONDS
    burst = QUICK_BURST_FILES if quick else BURST_FILES
    section = Section("Daemon (mlupdated run, default model)", ("measure", "value", "note"))
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        tmp_path = Path(tmp)
        ws = _workspace(tmp_path / "ws", env, min_batch=DROP_SIZE)
        daemon = _Daemon(ws, env).start()
        try:
            swaps, updates = _drops(daemon, ws, drops, sources)
            progress(f"daemon: idle for {idle_seconds:.0f} s")
            time.sleep(3.0)  # let the last update's bookkeeping finish
            cpu, rss_mean, rss_max = _idle(daemon.pid, idle_seconds)
        finally:
            daemon.stop()
        ws2 = _workspace(tmp_path / "ws2", env, min_batch=1_000_000)
        daemon = _Daemon(ws2, env).start()
        try:
            progress(f"daemon: burst of {burst} tiny PNGs")
            before, peak, queued_in, queued = _burst(daemon, ws2, burst, env)
        finally:
            daemon.stop()

    slack = [s - QUIET_SECONDS - u for s, u in zip(swaps, updates, strict=True)]
    section.rows += [
        (
            "drop → new current.mlmodel",
            f"{fmt(median(swaps), 2)} s",
            f"median of {len(swaps)} drops of {DROP_SIZE} photos; quiet period "
            f"{QUIET_SECONDS:g} s, stability wait {STABILITY_SECONDS:g} s",
        ),
        ("update time (logged)", f"{fmt(median(updates), 2)} s", "the run's own duration"),
        (
            "drop → swap − quiet − update",
            f"{fmt(median(slack), 2)} s",
            "stability wait, detection, scheduler tick, child start",
        ),
        ("idle CPU", f"{cpu:.2f} %", f"of one CPU over {idle_seconds:.0f} s, no drops"),
        ("idle RSS", f"{rss_mean:.0f} MB", f"mean (max {rss_max:.0f} MB)"),
        ("RSS before the burst", f"{before:.0f} MB", ""),
        (
            f"peak RSS while {burst:,} files are queued",
            f"{peak:.0f} MB",
            f"all queued in {queued_in:.0f} s"
            if queued >= burst
            else f"only {queued:,} queued after {queued_in:.0f} s (gave up)",
        ),
        ("burst memory growth", f"{peak - before:.0f} MB", "peak − before"),
    ]
    section.notes.append(
        "Config: update.min_batch = drop size, quiet_seconds = "
        f"{QUIET_SECONDS:g}, intake.stability_seconds = {STABILITY_SECONDS:g}, gate disabled "
        "(so every candidate is swapped in; the gate's own evaluation would run inside the "
        "logged update time), native observer. A first drop warms the daemon and is not "
        "counted. Times run from the last file's rename into corrections/ to the "
        "manifest's new version."
    )
    med_slack = median(slack)
    section.targets += [
        Target(
            "drop-to-swap",
            f"≤ quiet + update + {SWAP_SLACK_GOAL:g} s",
            f"quiet + update + {med_slack:.2f} s",
            med_slack <= SWAP_SLACK_GOAL,
            "" if med_slack <= SWAP_SLACK_GOAL else f"{med_slack - SWAP_SLACK_GOAL:.2f} s over",
        ),
        Target(
            "idle CPU",
            f"≤ {IDLE_CPU_GOAL}%",
            f"{cpu:.2f}%",
            cpu <= IDLE_CPU_GOAL,
            "" if cpu <= IDLE_CPU_GOAL else f"{cpu - IDLE_CPU_GOAL:.2f} points over",
        ),
        Target(
            "idle RSS",
            f"≤ {IDLE_RSS_GOAL:.0f} MB",
            f"{rss_mean:.0f} MB",
            rss_mean <= IDLE_RSS_GOAL,
            "" if rss_mean <= IDLE_RSS_GOAL else f"{rss_mean - IDLE_RSS_GOAL:.0f} MB over",
        ),
        Target(
            f"memory growth over the {burst:,}-file burst",
            f"≤ {BURST_GROWTH_GOAL:.0f} MB",
            f"{peak - before:.0f} MB" + ("" if queued >= burst else f" ({queued:,} queued)"),
            peak - before <= BURST_GROWTH_GOAL and queued >= burst,
            _burst_shortfall(peak - before, queued, burst),
        ),
    ]
    return section


def _burst_shortfall(growth: float, queued: int, burst: int) -> str:
    if queued < burst:
        return f"not measured to the end: {queued:,} of {burst:,} queued in time"
    return "" if growth <= BURST_GROWTH_GOAL else f"{growth - BURST_GROWTH_GOAL:.0f} MB over"


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _workspace(root: Path, env: dict[str, str], *, min_batch: int) -> Path:
    done = _cli("init", str(root), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"mlupdated init failed: {done.stderr.strip()}")
    (root / "config.toml").write_text(
        "[update]\n"
        f"min_batch = {min_batch}\n"
        f"quiet_seconds = {QUIET_SECONDS}\n"
        "max_wait_seconds = 86400\n"
        "timeout_seconds = 600\n"
        "[gate]\n"
        "enabled = false\n"
        "[intake]\n"
        f"stability_seconds = {STABILITY_SECONDS}\n"
        "[daemon]\n"
        'log_format = "json"\n'
        'log_level = "info"\n'
    )
    return root


class _Daemon:
    """One ``mlupdated run`` process and its parsed log records."""

    def __init__(self, ws: Path, env: dict[str, str]) -> None:
        self.ws = ws
        self.env = env
        self.records: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> _Daemon:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlupdated.cli", "run", "--workspace", str(self.ws)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for("ready")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": line.rstrip()}
            with self._cond:
                self.records.append(record if isinstance(record, dict) else {"event": line})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.records)

    def wait_for(self, event: str, *, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_TIMEOUT
        with self._cond:
            while True:
                for record in self.records[since:]:
                    if record.get("event") == event:
                        return record
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(json.dumps(r) for r in self.records[-20:])
                    raise RuntimeError(f"daemon: no '{event}' log record; last lines:\n{tail}")
                self._cond.wait(0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _manifest_current(ws: Path) -> int | None:
    try:
        return json.loads((ws / "models" / "manifest.json").read_text()).get("current")
    except (OSError, ValueError):
        return None  # caught between writes of a reader-safe file: ask again


def _drops(
    daemon: _Daemon, ws: Path, drops: int, sources: list[np.ndarray]
) -> tuple[list[float], list[float]]:
    """Drop ``DROP_SIZE`` photos ``drops + 1`` times (the first warms up); per drop,
    seconds from the last file to the new version, and the logged update time."""
    swaps: list[float] = []
    updates: list[float] = []
    for index in range(drops + 1):
        label = "warm-up drop" if index == 0 else f"drop {index}/{drops}"
        progress(f"daemon: {label} of {DROP_SIZE} photos")
        before = _manifest_current(ws)
        mark = daemon.mark()
        for i in range(DROP_SIZE):
            seed = 200_000 + index * DROP_SIZE + i
            folder = ws / "corrections" / ("Cat" if i % 2 else "Dog")
            buffer = io.BytesIO()
            varied_photo(sources, seed).save(buffer, format="JPEG", quality=90)
            tmp = folder / f".photo{seed}.jpg.tmp"
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, folder / f"photo{seed}.jpg")
        last = time.monotonic()
        deadline = last + WAIT_TIMEOUT
        while _manifest_current(ws) in (before, None):
            if time.monotonic() > deadline:
                raise RuntimeError("daemon: no new model version after the drop")
            time.sleep(0.01)
        swapped = time.monotonic() - last
        finished = daemon.wait_for("update finished", since=mark)
        if finished.get("outcome") != "promoted":
            raise RuntimeError(f"daemon: update did not promote: {finished}")
        if index:
            swaps.append(swapped)
            updates.append(float(finished["seconds"]))
    return swaps, updates


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _idle(pid: int, seconds: float) -> tuple[float, float, float]:
    """CPU share (% of one CPU), mean and max RSS (MB) over ``seconds``."""
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    samples = []
    while time.monotonic() - t0 < seconds:
        samples.append(_rss_mb(pid))
        time.sleep(1.0)
    cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
    return cpu, float(np.mean(samples)), float(np.max(samples))


def _tiny_png(index: int) -> bytes:
    from PIL import Image

    pixels = np.frombuffer(index.to_bytes(12, "little"), dtype=np.uint8).reshape(2, 2, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _pending(ws: Path, env: dict[str, str]) -> int:
    done = _cli("status", "--workspace", str(ws), "--json", env=env)
    if done.returncode != 0:
        return -1
    return sum(json.loads(done.stdout).get("pending", {}).values())


def _burst(
    daemon: _Daemon, ws: Path, count: int, env: dict[str, str]
) -> tuple[float, float, float]:
    """RSS before, peak RSS until all ``count`` files are pending, seconds that took."""
    time.sleep(3.0)
    before = _rss_mb(daemon.pid)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_mb(daemon.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    try:
        for i in range(count):
            folder = ws / "corrections" / ("Cat" if i % 2 else "Dog")
            (folder / f"tiny{i:05d}.png").write_bytes(_tiny_png(i))
        progress(f"daemon: {count} files written in {time.monotonic() - start:.1f} s")
        deadline = start + BURST_TIMEOUT
        while (pending := _pending(ws, env)) < count:
            if time.monotonic() > deadline:
                progress(f"daemon: only {pending} of {count} queued; giving up")
                break
            progress(f"daemon: {max(pending, 0)} of {count} queued")
            time.sleep(2.0)
        queued_in = time.monotonic() - start
    finally:
        stop.set()
        sampler.join()
    return before, peak, queued_in, pending
