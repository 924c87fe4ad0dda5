"""The systemd notify protocol against a datagram socket the test binds."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mlupdated.service.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_messages_arrive(listener) -> None:
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready(status="watching")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.status("3 pending")
    assert sock.recv(4096) == b"STATUS=3 pending"


def test_abstract_namespace_address() -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"mlupdated-test-{os.getpid()}"
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_only_when_asked(listener) -> None:
    sock, path = listener
    quiet = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert quiet.watchdog_interval is None
    assert not quiet.watchdog()
    asked = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert asked.watchdog_interval == pytest.approx(2.0)
    assert asked.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_watchdog_for_another_pid_is_ignored(listener) -> None:
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(env).watchdog_interval is None


def test_without_socket_everything_is_a_no_op(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    # A socket path nobody listens on must not raise either.
    gone = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert not gone.ready()


def test_a_manager_that_stops_reading_never_blocks_us(listener) -> None:
    _, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    # Nobody reads: the socket's queue fills up, and sends then fail instead of hanging.
    results = [notifier.watchdog() for _ in range(2000)]
    assert results[0] is True
    assert results[-1] is False
