"""Files intake refuses: one ``not queued: PATH: REASON`` line each, not repeated.

A file is refused at a given (size, mtime, ctime): the same file unchanged is not
reported again, and a change (a fixed permission, a new copy) gets a new look. Each
refusal is also recorded as an intake error in the queue.
"""

from __future__ import annotations

from typing import Any

from ...errors import MlupdatedError
from ..queue import Queue
from .filters import show_path
from .waiting import FileSig


class Refusals:
    """The refused files and the (size, mtime, ctime) each was refused at."""

    def __init__(self, queue: Queue, *, log: Any) -> None:
        self.queue = queue
        self._log = log
        self._bad: dict[str, FileSig] = {}

    def is_bad(self, rel: str, sig: FileSig) -> bool:
        """True when ``rel`` was refused at this (size, mtime, ctime)."""
        return self._bad.get(rel) == sig

    def forget(self, rel: str) -> None:
        """Forget that ``rel`` was refused (it went away)."""
        self._bad.pop(rel, None)

    def refuse(self, rel: str, sig: FileSig, reason: str) -> None:
        """Refuse ``rel`` at this (size, mtime, ctime): one ``not queued`` line, not repeated."""
        if self._bad.get(rel) != sig:
            self._bad[rel] = sig
            self._not_queued(rel, reason)

    def _not_queued(self, rel: str, reason: str) -> None:
        self._log.warning(f"not queued: {show_path(rel)}: {reason}", path=rel, reason=reason)
        try:
            self.queue.record_error("intake", rel, reason)
        except MlupdatedError as exc:
            self._log.error("cannot record an intake error", error=str(exc))
