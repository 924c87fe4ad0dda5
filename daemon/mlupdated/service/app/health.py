"""The daemon loop's periodic checks: the store, the file watcher, state/, the status.

Each check keeps what it needs between turns (an error said once, a count of dead
turns, the last status written) so that ``daemon.py`` only says when to run it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import MlupdatedError
from ..status import write_daemon_status

if TYPE_CHECKING:
    from ..intake import InboxClassifier, Intake
    from ..lock import WorkspaceLock
    from ..store import ModelStore
    from ..workspace import Workspace

STATUS_REFRESH_SECONDS = 60.0
INTAKE_DEAD_TURNS = 5


def state_lost(lock: WorkspaceLock, ws: Workspace, log: Any) -> bool:
    """True (said once, as an error) when state/ was removed or replaced: writes would go
    to files nobody reads. The workspace lock still keeps a second daemon out until we
    are gone."""
    lost = lock.lost()
    if lost is None:
        return False
    log.error(
        f"state/ was removed or replaced while running ({ws.relative(lost)} is "
        "not the file opened at start); stopping, a restart re-creates state/",
        path=ws.relative(lost),
    )
    return True


class StoreCheck:
    """Settles what people changed in the store (store/guard.py)."""

    def __init__(self, store: ModelStore, inbox: InboxClassifier, log: Any) -> None:
        self._store = store
        self._inbox = inbox
        self._log = log
        self._error: str | None = None

    def __call__(self) -> bool:
        """True when the store is readable (then inbox photos that waited for it are
        classified)."""
        try:
            readable = self._store.check().readable
        except (MlupdatedError, OSError) as exc:  # a full disk, a folder made read-only
            if str(exc) != self._error:  # said once, not every few seconds
                self._log.error("model store not checked", error=str(exc))
            self._error = str(exc)
            return False
        self._error = None
        if readable:
            self._inbox.retry_held()
        return readable


class IntakeWatch:
    """Restarts the file watcher when it stays dead for ``INTAKE_DEAD_TURNS`` turns."""

    def __init__(self, intake: Intake, log: Any) -> None:
        self._intake = intake
        self._log = log
        self._dead = 0

    def check(self) -> None:
        """One turn's look at the watcher."""
        try:
            alive = self._intake.is_alive()
        except Exception:
            alive = False
        # The intake restarts its own observer; step in only when it stays dead.
        self._dead = 0 if alive else self._dead + 1
        if self._dead < INTAKE_DEAD_TURNS:
            return
        self._dead = 0
        self._log.warning("file watcher found dead; restarting it")
        try:
            self._intake.stop()
        except Exception:
            pass
        try:
            self._intake.start()
        except MlupdatedError as exc:
            self._log.error("file watcher did not restart", error=str(exc))


class StatusWriter:
    """Writes ``state/status.json``, skipping unchanged states."""

    def __init__(self, ws: Workspace, log: Any) -> None:
        self._ws = ws
        self._log = log
        self._last: dict[str, Any] | None = None
        self._last_time = 0.0

    def publish(self, data: dict[str, Any]) -> None:
        """Write ``data`` unless it is what was written less than a while ago."""
        # Every write is an fsync: skip unchanged states, but refresh now and then so
        # a reader can tell a live daemon from a stale file.
        now = time.monotonic()
        if data == self._last and now - self._last_time < STATUS_REFRESH_SECONDS:
            return
        try:
            write_daemon_status(self._ws, data)
        except MlupdatedError as exc:
            self._log.warning("status not written", error=str(exc))
            return
        self._last, self._last_time = data, now
