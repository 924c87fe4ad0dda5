"""A real ``mlupdated run`` on a throw-away workspace, driven as a user would.

Each sync-recipe test replays one tool's way of writing files into the workspace of a
running daemon and then asks ``mlupdated status --json`` (or reads
``predictions.jsonl``) what was taken. The daemon is told apart from the test only by
files, signals, the CLI and the notify socket.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MLUPDATED = [sys.executable, "-m", "mlupdated.cli"]
# Generous upper bounds for a loaded 2-core CI machine; a pass never waits this long.
START_TIMEOUT = 120.0
SETTLE_TIMEOUT = 90.0
STOP_TIMEOUT = 90.0
POLL_SECONDS = 0.25
# Short enough to keep the tests quick, long enough that a writer pausing between two
# chunks (CHUNK_PAUSE) never looks finished.
STABILITY_SECONDS = 1.5
# The log event of intake for a new correction: "correction queued: PATH as LABEL".
QUEUED_EVENT = "correction queued"
CHUNK_PAUSE = 0.05


def make_jpeg(seed: int, *, size: int = 24) -> bytes:
    """A small JPEG whose content (and so sha256) differs for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_in_chunks(path: Path, data: bytes, *, chunks: int = 3, preallocate: bool = False) -> None:
    """Write ``data`` to ``path`` in pieces, pausing between them like a slow transfer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        if preallocate:
            # SMB clients often set the final size first and fill it in afterwards.
            handle.truncate(len(data))
            handle.flush()
        step = max(1, len(data) // chunks)
        for start in range(0, len(data), step):
            handle.seek(start)
            handle.write(data[start : start + step])
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(CHUNK_PAUSE)


def set_config_key(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = value`` inside ``[section]`` of the commented default config."""
    pattern = re.compile(rf"(^\[{section}\]\n(?:(?!^\[).*\n)*?)^#?\s*{key}\s*=.*$", re.MULTILINE)
    new, count = pattern.subn(lambda m: f"{m.group(1)}{key} = {value}", text, count=1)
    if count != 1:
        raise AssertionError(f"config.toml has no {section}.{key} line to change")
    return new


class Daemon:
    """One ``mlupdated run`` process on ``workspace``."""

    def __init__(self, workspace: Path, env: dict[str, str], scratch: Path) -> None:
        self.workspace = workspace
        self.env = env
        self.scratch = scratch
        self.log_path = scratch / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MLUPDATED, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no daemon log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start the daemon and wait for READY=1 on our own notify socket."""
        sock_path = self.scratch / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(sock_path))
        listener.settimeout(POLL_SECONDS)
        env = dict(self.env, NOTIFY_SOCKET=str(sock_path))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*MLUPDATED, "run", "--workspace", str(self.workspace)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"daemon exited with {self.process.returncode} before it was ready:\n"
                        + self.log_tail()
                    )
                try:
                    message = listener.recv(4096).decode()
                except TimeoutError:
                    continue
                if "READY=1" in message.split("\n"):
                    return
            raise AssertionError("daemon never sent READY=1:\n" + self.log_tail())
        finally:
            listener.close()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("daemon ignored SIGTERM:\n" + self.log_tail()) from None
        return self.process.returncode

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--workspace", str(self.workspace), "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def pending(self) -> dict[str, int]:
        """Pending corrections per label, labels with none left out."""
        return {label: n for label, n in self.status()["pending"].items() if n}

    def queued_paths(self) -> list[str]:
        """Workspace-relative paths the log reports as queued corrections, in order."""
        paths = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if str(event.get("event", "")).startswith(QUEUED_EVENT):
                paths.append(event["path"])
        return paths

    def predictions(self) -> list[dict[str, Any]]:
        path = self.workspace / "predictions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_until(self, what: str, check: Callable[[], bool]) -> None:
        """Poll ``check`` until true; fail naming ``what`` (and the log) otherwise."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            if check():
                return
            assert self.process is not None and self.process.poll() is None, (
                f"daemon died while waiting for {what}:\n{self.log_tail()}"
            )
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")
