"""End-to-end harness: the real ``mlupdated run`` process on a temporary workspace.

Tests talk to the daemon only as a user or a service manager would: they write files
into the workspace, send signals, run the CLI, and read the JSON log lines the daemon
writes to stderr.

The model is a small updatable Cat/Dog classifier (tests/helpers/updatable_specs.py),
and the photos are of two visibly different kinds — mostly red and mostly blue, with
noise — so a handful of corrections can move the model's predictions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlupdated.coreml.spec import save_spec
from mlupdated.engine.predictor import Predictor
from mlupdated.service.workspace import init_workspace
from PIL import Image

from tests.helpers.updatable_specs import build_updatable_spec

IMAGE_SIZE = 16
DEFAULT_TIMEOUT = 60.0

# Quiet periods of about a second keep the suite fast; a small model keeps training
# short. The learning rate is high because the batch is small and must move the model.
TEST_CONFIG = {
    "update": {
        "min_batch": 10,
        "quiet_seconds": 1.0,
        "max_wait_seconds": 60,
        "epochs": 10,
        "learning_rate": 0.5,
        "timeout_seconds": 60,
        "retry_backoff_seconds": 1,
        "max_backoff_seconds": 2,
    },
    "intake": {"stability_seconds": 0.5, "rescan_seconds": 5, "polling_interval": 0.5},
    "daemon": {"shutdown_timeout": 5, "log_format": "json", "log_level": "debug"},
}


def toml_text(config: dict[str, dict[str, Any]]) -> str:
    """A tiny TOML writer for flat sections (all the test configs need)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def photo_bytes(kind: str, seed: int, *, size: int = IMAGE_SIZE) -> bytes:
    """The PNG bytes of :func:`make_photo`."""
    buffer = io.BytesIO()
    _photo(kind, seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(kind: str, seed: int, size: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (size, size, 3)).astype(np.int32)
    channel = 0 if kind == "red" else 2
    pixels[..., channel] += 180
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_photo(path: Path, kind: str, seed: int) -> Path:
    """A PNG that is mostly red (``kind="red"``) or mostly blue, with per-seed noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}"
    _photo(kind, seed, IMAGE_SIZE).save(tmp, format="PNG")
    os.replace(tmp, path)  # arrives whole: tests of partial writes do their own writing
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None):
    """Run ``mlupdated ARGS`` and return the completed process (text)."""
    return subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def predict(ws: Path, paths: list[Path]) -> dict[str, str]:
    """``mlupdated predict --workspace WS --json``: path → label."""
    done = cli("predict", "--workspace", str(ws), "--json", *map(str, paths))
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        out[str(Path(record["path"]).name)] = record["label"]
    return out


def status(ws: Path) -> dict[str, Any]:
    """``mlupdated status --workspace WS --json``."""
    done = cli("status", "--workspace", str(ws), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class DaemonProcess:
    """One ``mlupdated run`` child, its log lines parsed as they arrive."""

    def __init__(self, ws: Path, env: dict[str, str] | None = None) -> None:
        self.ws = ws
        self.env = {**os.environ, **(env or {})}
        self.records: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(
        self, *, wait_ready: bool = True, umask: int = -1, prefix: tuple[str, ...] = ()
    ) -> DaemonProcess:
        """Start the daemon (``umask``: the one it starts with; -1 keeps ours; ``prefix``:
        a command it runs under, such as ``setpriv`` dropping capabilities)."""
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "mlupdated.cli", "run", "--workspace", str(self.ws)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
            umask=umask,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if wait_ready:
            self.wait_for(event="ready")
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": line, "raw": True}
            with self._cond:
                self.raw.append(line)
                self.records.append(record if isinstance(record, dict) else {"event": line})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def mark(self) -> int:
        """The index of the next log record (for waits that start "from now")."""
        with self._cond:
            return len(self.records)

    def find(self, *, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        """Records at index ≥ ``since`` whose fields equal ``match`` (``event`` may be a
        substring)."""
        with self._cond:
            return [r for r in self.records[since:] if _matches(r, match)]

    def wait_for(
        self,
        *,
        since: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """Wait for a log record matching ``match`` (and ``where``); return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self.records[since:]:
                    if _matches(record, match) and (where is None or where(record)):
                        return record
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if remaining <= 0 or exited:
                    tail = "\n".join(self.raw[-40:])
                    state = f"exited {self.proc.returncode}" if exited else "timed out"
                    raise AssertionError(f"no log record {match} ({state}); log tail:\n{tail}")
                self._cond.wait(min(remaining, 0.5))

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """SIGTERM and wait for the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self) -> None:
        """SIGKILL the daemon process alone (its training child must notice by itself)."""
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def cleanup(self) -> None:
        if self.proc is None:
            return
        # Kept beside the workspace for a post-mortem of a failed test.
        with self._cond:
            text = "\n".join(self.raw)
        (self.ws.parent / f"daemon-{self.proc.pid}.log").write_text(text)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def log_seconds(record: dict[str, Any]) -> float:
    """The time a log record was written (its ISO UTC ``timestamp``), in epoch seconds:
    for durations measured on the daemon's clock rather than the test's."""
    return datetime.fromisoformat(record["timestamp"]).timestamp()


def _matches(record: dict[str, Any], match: dict[str, Any]) -> bool:
    for key, value in match.items():
        got = record.get(key)
        if key == "event" and isinstance(got, str) and isinstance(value, str):
            if value not in got:
                return False
        elif got != value:
            return False
    return True


class Workspace:
    """A test workspace made with ``mlupdated init`` plus helpers to drop photos."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def corrections(self) -> Path:
        return self.root / "corrections"

    @property
    def current_model(self) -> Path:
        return self.root / "models" / "current.mlmodel"

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "models" / "manifest.json").read_text())

    def write_config(self, **sections: dict[str, Any]) -> None:
        config = {name: dict(values) for name, values in TEST_CONFIG.items()}
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        (self.root / "config.toml").write_text(toml_text(config))


def build_small_model(path: Path) -> Path:
    """Write the small updatable Cat/Dog model of the daemon tests to ``path``.

    Shared with other end-to-end suites (import it from here) so that they test the
    same model as the daemon's own tests.
    """
    spec = build_updatable_spec(
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        conv_channels=4,
        hidden=8,
        epochs=10,
        learning_rate=0.1,
        batch_size=4,
        batch_sizes=(2, 4, 8, 10),
        weight_seed=3,
    )
    save_spec(spec, path)
    return path


@contextmanager
def daemon_factory() -> Iterator[Callable[..., DaemonProcess]]:
    """A factory of :class:`DaemonProcess` es; each one made is killed (and its log kept
    beside its workspace) when the ``with`` block ends. Shared with other end-to-end
    suites: their ``daemons`` fixture can be ``with daemon_factory() as make: yield make``.
    """
    made: list[DaemonProcess] = []

    def make(ws: Workspace, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(ws.root, env)
        made.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for daemon in made:
            daemon.cleanup()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small updatable Cat/Dog model, built once per session."""
    return build_small_model(tmp_path_factory.mktemp("model") / "CatDogSmall.mlmodel")


@pytest.fixture
def workspace(tmp_path: Path, model_path: Path) -> Workspace:
    """A fresh workspace around the small model, with the fast test config."""
    root = tmp_path / "ws"
    # In-process: ``mlupdated init`` has its own tests, and each CLI start costs seconds.
    init_workspace(root, model_path=model_path)
    ws = Workspace(root)
    ws.write_config()
    return ws


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Factory of daemon processes; every one is killed at the end of the test."""
    with daemon_factory() as make:
        yield make


def wrong_photos(
    ws: Workspace, tmp: Path, *, count: int, seed: int = 100
) -> tuple[str, list[Path]]:
    """``count`` photos of one kind, made outside the workspace, and the label the model
    does NOT give them (so dropping them under that label is a correction)."""
    photos = [make_photo(tmp / f"photo{seed + i}.png", "red", seed + i) for i in range(count)]
    predictor = Predictor.from_path(ws.current_model, cache=False)
    labels = {r.label for r in predictor.predict_paths(photos)}
    assert len(labels) == 1, f"the model should agree with itself on one kind: {labels}"
    (given,) = labels
    return ("Dog" if given == "Cat" else "Cat"), photos


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid follows the closing bracket.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    return alive


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
