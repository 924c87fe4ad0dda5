"""The stability wait: a file is taken once it stopped changing *and* decodes.

``StabilityWait`` is owned by ``Arrivals`` and holds files in their wait
(``waiting.py``: one ``Candidate`` each, with a due time in a heap); when due, a file
is looked at again (``checks.py``: ``lstat``: size and mtime unchanged for
``stability_seconds``, or closed by its writer since its last write: ``closes.py``),
then decoded and hashed on a reader thread (``reading.py``) — two at a time, so a read
that blocks (a cloud placeholder being downloaded, a hung share) never stalls intake —
and its outcome comes back to the worker as an event. Undecodable files are reported
once (``refusals.py``: ``not queued: PATH: REASON``); read errors and queue write
failures are retried with back-off. What a complete file means is the owner's
decision: it reports back through the ``take`` and ``gone`` callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..queue import Queue
from ..workspace import Workspace
from .checks import Checks
from .closes import CloseMarks
from .events import ReadDone, ReadResult
from .reading import Readers
from .refusals import Refusals
from .waiting import Candidate, FileSig, Read, Waiting


class StabilityWait:
    """Files in their stability wait, and the reader threads (worker thread only).

    ``take(rel, size, mtime, digest)`` is called for a file that is complete (it
    returns False when the file was not queued); ``gone(rel)`` for a file that a
    complete one replaced by a rename.
    """

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        queue: Queue,
        *,
        log: Any,
        stopping: threading.Event,
        post: Callable[[ReadDone], None],
        take: Callable[[str, int, float, str], bool],
        gone: Callable[[str], None],
    ) -> None:
        self.workspace = workspace
        self.queue = queue
        self._stopping = stopping
        self._waiting = Waiting()
        self._refusals = Refusals(queue, log=log)
        # Closed after writing (Linux): such a file skips the rest of its wait.
        self.closes = CloseMarks()
        self._readers = Readers(log=log, post=post)
        self._checks = Checks(
            workspace,
            config,
            queue,
            log=log,
            waiting=self._waiting,
            closes=self.closes,
            readers=self._readers,
            refusals=self._refusals,
            take=take,
            gone=gone,
        )

    @property
    def config(self) -> Config:
        """The config in force (a reload replaces it)."""
        return self._checks.config

    @config.setter
    def config(self, config: Config) -> None:
        self._checks.config = config

    @property
    def target_size(self) -> tuple[int, int] | None:
        """The model's input (width, height): large JPEGs are checked at a reduced scale."""
        return self._checks.target_size

    @target_size.setter
    def target_size(self, size: tuple[int, int] | None) -> None:
        self._checks.target_size = size

    # --- for the owner ------------------------------------------------------------------

    def is_waiting(self, rel: str) -> bool:
        """True while ``rel`` is in its wait."""
        return rel in self._waiting

    def waiting_under(self, prefix: str) -> set[str]:
        """The waiting files under ``prefix``."""
        return self._waiting.under(prefix)

    def forget(self, rel: str) -> None:
        """Stop waiting for ``rel`` and forget that it was bad (it went away)."""
        self._waiting.pop(rel)
        self._refusals.forget(rel)
        self.closes.clear(rel)

    def is_bad(self, rel: str, sig: FileSig) -> bool:
        """True when ``rel`` was refused at this (size, mtime, ctime)."""
        return self._refusals.is_bad(rel, sig)

    def refuse(self, rel: str, sig: FileSig, reason: str) -> None:
        """Refuse ``rel`` at this (size, mtime, ctime): one ``not queued`` line, not repeated."""
        self._refusals.refuse(rel, sig, reason)

    def path_of(self, rel: str) -> Path:
        """The absolute path of a workspace-relative one."""
        return self._checks.path_of(rel)

    def waiting(self) -> int:
        """Files seen but not yet taken or refused (in their stability wait)."""
        return len(self._waiting)

    def next_due_in(self) -> float:
        """Seconds until the next waiting file should be looked at (capped)."""
        return self._waiting.next_due_in()

    def wait_for(self, rel: str, *, replaces: str | None) -> None:
        """Start (or hurry) the stability wait of ``rel``."""
        cand = self._waiting.get(rel)
        now = time.monotonic()
        if cand is None:
            cand = Candidate(rel=rel, replaces=replaces)
            self._waiting.add(cand)
            self._waiting.schedule(cand, now)
            return
        cand.replaces = cand.replaces or replaces
        if cand.due > now + 0.05:
            self._waiting.schedule(cand, now + 0.05)

    # --- the timer loop ---------------------------------------------------------------

    def check_due(self) -> None:
        """Look at every waiting file whose time has come, then feed free readers."""
        now = time.monotonic()
        while not self._stopping.is_set():
            cand = self._waiting.pop_due(now)
            if cand is None:
                break
            self._checks.check(cand)
        self._pump_reads()

    def _pump_reads(self) -> None:
        while self._readers.has_turn() and not self._stopping.is_set():
            cand = self._waiting.get(self._readers.next_in_line())
            if cand is None or not cand.waiting_for_reader:
                continue
            cand.waiting_for_reader = False
            self._checks.check(cand)

    def read_done(self, rel: str, read: Read, outcome: ReadResult) -> None:
        """Worker thread: a reader finished; continue where the check left off."""
        self._readers.finished(rel, read)
        self._pump_reads()
        self._checks.read_back(rel, read, outcome)
