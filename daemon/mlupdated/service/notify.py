"""The systemd notify protocol (``Type=notify``), without a dependency.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)
and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``). We send
datagrams such as ``READY=1``. Without the variable every call is a no-op, so the
daemon runs the same under launchd, a terminal, or a test.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"


class Notifier:
    """Sends state changes to the service manager; silent when there is none."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address: str | bytes | None = None
        if address:
            # A leading '@' names Linux's abstract namespace: a NUL byte on the wire.
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier configured from systemd's environment variables."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get(WATCHDOG_USEC_ENV, "")
        pid = env.get(WATCHDOG_PID_ENV, "")
        # WATCHDOG_PID names the process that must ping; a child that inherited the
        # variables must not ping on the daemon's behalf.
        if raw.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(env.get(SOCKET_ENV) or None, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the manager's timeout), or None."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def send(self, message: str) -> bool:
        """Send one datagram; False when there is no manager or it is unreachable."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block: a manager that stops reading (its queue is full) must not
                # stall the daemon's loop; that message is lost, the next one tries again.
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8"), self._address)
        except OSError:
            # The manager going away must never take the daemon down with it.
            return False
        return True

    def ready(self, *, status: str | None = None) -> bool:
        """Start-up is complete."""
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        """Shut-down has begun."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """A configuration reload has begun."""
        # MONOTONIC_USEC lets newer systemd tell this reload from an earlier one.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def watchdog(self) -> bool:
        """Keep-alive ping; only sent when the manager asked for a watchdog."""
        if self._watchdog_usec is None:
            return False
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line human status shown by ``systemctl status``."""
        return self.send(f"STATUS={text}")
