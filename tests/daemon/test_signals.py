"""Signals, systemd notify, a second daemon, and bad files that must not stop anything."""

from __future__ import annotations

import shutil
import signal
import socket
import threading
import time

import pytest

from tests.daemon.conftest import cli, make_photo, status, wrong_photos


class _Manager:
    """A stand-in for systemd: binds the notify socket and keeps every message."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.2)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def wait_for(self, wanted: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(wanted in m.splitlines() for m in list(self.messages)):
                return
            time.sleep(0.05)
        raise AssertionError(f"{wanted} never arrived; got {self.messages[-5:]}")

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def manager(tmp_path):
    made = _Manager(str(tmp_path / "notify.sock"))
    yield made
    made.close()


def test_notify_reload_bad_files_second_daemon_and_stop(
    workspace, daemons, tmp_path, manager
) -> None:
    label, (photo,) = wrong_photos(workspace, tmp_path / "camera", count=1)
    workspace.write_config(update={"min_batch": 10}, intake={"rescan_seconds": 2})
    daemon = daemons(workspace, {"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "1000000"}).start()
    manager.wait_for("READY=1")
    manager.wait_for("WATCHDOG=1")

    # A second daemon on the same workspace is refused.
    second = cli("run", "--workspace", str(workspace.root))
    assert second.returncode == 2
    assert f"already running (pid {daemon.pid})" in second.stderr

    # Three bad drops: one clear line each, and the daemon carries on.
    (workspace.corrections / "Dog" / "corrupt.png").write_bytes(
        make_photo(tmp_path / "whole.png", "red", 5).read_bytes()[:200]
    )
    (workspace.corrections / "Cat" / "notes.png").write_text("not a photo at all\n")
    make_photo(workspace.corrections / "Hamster" / "h.png", "red", 6)
    for name in ("Dog/corrupt.png", "Cat/notes.png", "Hamster/h.png"):
        daemon.wait_for(event=f"not queued: corrections/{name}", timeout=30)

    # The next good correction still trains, once min_batch is lowered by SIGHUP.
    shutil.copy2(photo, workspace.corrections / label / photo.name)
    daemon.wait_for(event="correction queued", path=f"corrections/{label}/{photo.name}")
    assert not daemon.find(event="update started")
    workspace.write_config(update={"min_batch": 1}, intake={"rescan_seconds": 2})
    mark = daemon.mark()
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for(event="config reloaded", since=mark)
    assert reloaded["min_batch"] == 1
    finished = daemon.wait_for(event="update finished", since=mark, timeout=90)
    assert finished["outcome"] == "promoted", finished.get("reason")
    assert daemon.proc.poll() is None

    # Each bad file was reported once, even after a rescan went over them again.
    time.sleep(3)  # longer than rescan_seconds
    for name in ("Dog/corrupt.png", "Cat/notes.png", "Hamster/h.png"):
        assert len(daemon.find(event=f"not queued: corrections/{name}")) == 1, name
    state = status(workspace.root)
    assert state["trained"] == 1
    assert len(state["recent_errors"]) >= 3

    # A bad config on SIGHUP is logged and the old one kept.
    (workspace.root / "config.toml").write_text("[update]\nmin_batch = 'ten'\n")
    mark = daemon.mark()
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(event="config not reloaded", since=mark)
    assert daemon.proc.poll() is None

    daemon.signal(signal.SIGTERM)
    manager.wait_for("STOPPING=1")
    assert daemon.wait_exit(timeout=30) == 0
