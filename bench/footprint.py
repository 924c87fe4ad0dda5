"""Footprint: the daemon's memory at rest after it classified inbox photos, and the
drop-to-swap latency with the default ``stability_seconds``.

The real ``mlupdated run`` on a temporary workspace around the default model, driven
as a user would drive it (files in ``inbox/`` and ``corrections/``, its JSON log); its
memory is read from ``/proc``. Figures, not pass/fail timings: the targets compare
them with the goals of the footprint issue.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Section, Target, fmt, median, progress, varied_photo
from .daemon import QUIET_SECONDS, _cli, _Daemon, _drops, _idle, _rss_mb

INBOX_PHOTOS, QUICK_INBOX_PHOTOS = 100, 10
IDLE_SECONDS, QUICK_IDLE_SECONDS = 30.0, 5.0
DROPS, QUICK_DROPS = 3, 1
DROP_SIZE = 20
# After the last answer: longer than the inbox's idle release (10 s), so that "idle"
# means a daemon at rest, as it is between bursts of photos.
SETTLE_SECONDS = 15.0
IDLE_RSS_GOAL = 150.0  # MB
SWAP_SLACK_GOAL = 1.0  # seconds over quiet + update
WAIT_TIMEOUT = 600.0
ANSWERS = ("inbox: classified", "inbox: looks like neither", "inbox: not classified")


def run(*, quick: bool, sources: list[np.ndarray], env: dict[str, str]) -> Section:
    """Measure and return the footprint section."""
    photos = QUICK_INBOX_PHOTOS if quick else INBOX_PHOTOS
    idle_seconds = QUICK_IDLE_SECONDS if quick else IDLE_SECONDS
    drops = QUICK_DROPS if quick else DROPS
    section = Section("Footprint (mlupdated run, default model)", ("measure", "value", "note"))
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        ws = _workspace(Path(tmp) / "ws", env)
        daemon = _Daemon(ws, env).start()
        try:
            ready = _rss_mb(daemon.pid)
            progress(f"footprint: {photos} inbox photos")
            peak, answered_in = _inbox(daemon, ws, photos, sources)
            time.sleep(SETTLE_SECONDS)
            progress(f"footprint: idle for {idle_seconds:.0f} s")
            _cpu, rss_mean, rss_max = _idle(daemon.pid, idle_seconds)
            swaps, updates = _drops(daemon, ws, drops, sources)
        finally:
            daemon.stop()
    slack = [s - QUIET_SECONDS - u for s, u in zip(swaps, updates, strict=True)]
    med_slack = median(slack)
    section.rows += [
        ("RSS when ready", f"{ready:.0f} MB", "before any photo"),
        (
            f"peak RSS while classifying {photos} inbox photos",
            f"{peak:.0f} MB",
            f"all answered in {answered_in:.0f} s",
        ),
        (
            f"idle RSS after {photos} inbox photos",
            f"{rss_mean:.0f} MB",
            f"mean over {idle_seconds:.0f} s from {SETTLE_SECONDS:g} s after the last "
            f"answer (max {rss_max:.0f} MB)",
        ),
        (
            "drop → swap − quiet − update",
            f"{fmt(med_slack, 2)} s",
            f"median of {len(slack)} drops of {DROP_SIZE} photos, default stability wait",
        ),
        ("drop → new current.mlmodel", f"{fmt(median(swaps), 2)} s", ""),
        ("update time (logged)", f"{fmt(median(updates), 2)} s", ""),
    ]
    section.notes.append(
        f"Config: defaults except update.min_batch = {DROP_SIZE}, quiet_seconds = "
        f"{QUIET_SECONDS:g}, gate disabled; intake.stability_seconds stays at its default. "
        "Inbox photos are written in place (open, write, close); corrections are written "
        "to a hidden temporary name and renamed in, as sync tools do. Times run from the "
        "last file's rename to the manifest's new version."
    )
    section.targets += [
        Target(
            f"idle RSS after {photos} inbox photos",
            f"≤ {IDLE_RSS_GOAL:.0f} MB",
            f"{rss_mean:.0f} MB",
            rss_mean <= IDLE_RSS_GOAL,
            "" if rss_mean <= IDLE_RSS_GOAL else f"{rss_mean - IDLE_RSS_GOAL:.0f} MB over",
        ),
        Target(
            "drop-to-swap, default stability wait",
            f"≤ quiet + update + {SWAP_SLACK_GOAL:g} s",
            f"quiet + update + {med_slack:.2f} s",
            med_slack <= SWAP_SLACK_GOAL,
            "" if med_slack <= SWAP_SLACK_GOAL else f"{med_slack - SWAP_SLACK_GOAL:.2f} s over",
        ),
    ]
    return section


def _workspace(root: Path, env: dict[str, str]) -> Path:
    done = _cli("init", str(root), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"mlupdated init failed: {done.stderr.strip()}")
    (root / "config.toml").write_text(
        "[update]\n"
        f"min_batch = {DROP_SIZE}\n"
        f"quiet_seconds = {QUIET_SECONDS}\n"
        "max_wait_seconds = 86400\n"
        "timeout_seconds = 600\n"
        "[gate]\n"
        "enabled = false\n"
        "[daemon]\n"
        'log_format = "json"\n'
        'log_level = "info"\n'
    )
    return root


def _answers(daemon: _Daemon, since: int) -> int:
    with daemon._cond:
        return sum(1 for r in daemon.records[since:] if r.get("event") in ANSWERS)


def _inbox(daemon: _Daemon, ws: Path, count: int, sources: list[np.ndarray]) -> tuple[float, float]:
    """Write ``count`` photos into the inbox; peak RSS (MB) until every one is answered,
    and the seconds that took."""
    mark = daemon.mark()
    start = time.monotonic()
    peak = _rss_mb(daemon.pid)
    for i in range(count):
        buffer = io.BytesIO()
        varied_photo(sources, 300_000 + i).save(buffer, format="JPEG", quality=90)
        fd = os.open(ws / "inbox" / f"inbox{i:03d}.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, buffer.getvalue())
        finally:
            os.close(fd)
    deadline = start + WAIT_TIMEOUT
    while _answers(daemon, mark) < count:
        if time.monotonic() > deadline or (daemon.proc and daemon.proc.poll() is not None):
            raise RuntimeError(f"footprint: only {_answers(daemon, mark)} of {count} answered")
        peak = max(peak, _rss_mb(daemon.pid))
        time.sleep(0.2)
    return peak, time.monotonic() - start
