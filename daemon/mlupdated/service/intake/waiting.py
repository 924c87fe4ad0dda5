"""The files in their stability wait: one record each, and when each is due.

A ``Candidate`` is one file in its wait: its (size, mtime, ctime) when last looked at,
since when it has not changed, how often it failed, and the read under way. ``Waiting``
holds the candidates by path with their due times in a heap, for the timer loop of
``StabilityWait`` (``stability.py``).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass

from .events import ReadResult

MAX_WAIT_TICK = 0.25

# A file's (size, mtime, ctime) in ns: see ``filters.file_sig``.
FileSig = tuple[int, int, int]


@dataclass
class Read:
    """One decode-and-hash of a file at a given (size, mtime, ctime), on a reader thread."""

    sig: FileSig
    started: float
    slow_logged: bool = False


@dataclass
class Candidate:
    """One file in its stability wait."""

    rel: str
    sig: FileSig | None = None
    since: float = 0.0
    due: float = math.inf
    stable_failures: int = 0
    read_failures: int = 0
    store_failures: int = 0
    replaces: str | None = None
    waiting_for_reader: bool = False
    reading: Read | None = None
    read_result: tuple[Read, ReadResult] | None = None


class Waiting:
    """The waiting files by workspace-relative path, and a heap of their due times
    (worker thread only)."""

    def __init__(self) -> None:
        self._candidates: dict[str, Candidate] = {}
        self._due: list[tuple[float, int, str]] = []  # heap; stale entries skipped
        self._seq = itertools.count()

    def __contains__(self, rel: object) -> bool:
        return rel in self._candidates

    def __len__(self) -> int:
        return len(self._candidates)

    def get(self, rel: str) -> Candidate | None:
        """The candidate at ``rel``, if it is waiting."""
        return self._candidates.get(rel)

    def add(self, cand: Candidate) -> None:
        """Start holding ``cand`` (not yet due: see ``schedule``)."""
        self._candidates[cand.rel] = cand

    def pop(self, rel: str) -> None:
        """Stop holding ``rel`` (its heap entries go stale)."""
        self._candidates.pop(rel, None)

    def under(self, prefix: str) -> set[str]:
        """The waiting files under ``prefix``."""
        return {r for r in self._candidates if r.startswith(prefix)}

    def schedule(self, cand: Candidate, due: float) -> None:
        """Look at ``cand`` again at ``due`` (``math.inf``: not until told)."""
        cand.due = due
        if due != math.inf:
            heapq.heappush(self._due, (due, next(self._seq), cand.rel))

    def next_due_in(self) -> float:
        """Seconds until the next waiting file should be looked at (capped)."""
        self._drop_stale()
        if not self._due:
            return MAX_WAIT_TICK
        return max(0.0, min(MAX_WAIT_TICK, self._due[0][0] - time.monotonic()))

    def pop_due(self, now: float) -> Candidate | None:
        """The next candidate due by ``now``, taken off the heap; None when none is."""
        self._drop_stale()
        if not self._due or self._due[0][0] > now:
            return None
        _due, _seq, rel = heapq.heappop(self._due)
        cand = self._candidates[rel]
        cand.due = math.inf  # the check schedules the next look
        return cand

    def _drop_stale(self) -> None:
        while self._due:
            due, _seq, rel = self._due[0]
            cand = self._candidates.get(rel)
            if cand is not None and cand.due == due:
                return
            heapq.heappop(self._due)
