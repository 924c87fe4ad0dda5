"""The stability wait: a file is taken once it stopped changing *and* decodes.

``StabilityWait`` is owned by ``Arrivals`` and holds files in their wait:
each has a due time in a heap; when due it is looked at again (``lstat``: size and
mtime unchanged for ``stability_seconds``, or closed by its writer since its last write:
``closes.py``?), then decoded and hashed on a reader
thread — two at a time, so a read that blocks (a cloud placeholder being downloaded,
a hung share) never stalls intake — and its outcome comes back to the worker as an
event. Undecodable files are reported once (``not queued: PATH: REASON``); read
errors and queue write failures are retried with back-off. What a complete file
means is the owner's decision: it reports back through the ``take`` and ``gone``
callbacks.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ImageError, MlupdatedError
from ..config import Config
from ..queue import Queue
from ..workspace import Workspace
from .closes import CloseMarks
from .events import ReadDone, ReadResult
from .filters import check_image, file_kind, file_sig, inside, sha256_file

# Stable but undecodable: look once more after another stability period before calling
# it bad, so a pre-allocated file whose writer pauses is not reported for nothing.
BAD_AFTER_STABLE_CHECKS = 2
# Read errors that are not the file's fault (cloud placeholders, flaky mounts): retry.
RETRY_BACKOFF_MAX = 60.0
MAX_WAIT_TICK = 0.25
# Decoding and hashing run on reader threads so that a read that blocks (a cloud
# placeholder being downloaded, a hung network share) never stalls intake. Two at a
# time: about what two cores decode, and a stuck read cannot take more than its slot.
MAX_READS = 2
SLOW_READ_SECONDS = 30.0

# A file's (size, mtime, ctime) in ns: see ``filters.file_sig``.
FileSig = tuple[int, int, int]


@dataclass
class _Read:
    """One decode-and-hash of a file at a given (size, mtime, ctime), on a reader thread."""

    sig: FileSig
    started: float
    slow_logged: bool = False


@dataclass
class _Candidate:
    rel: str
    sig: FileSig | None = None
    since: float = 0.0
    due: float = math.inf
    stable_failures: int = 0
    read_failures: int = 0
    store_failures: int = 0
    replaces: str | None = None
    waiting_for_reader: bool = False
    reading: _Read | None = None
    read_result: tuple[_Read, ReadResult] | None = None


def show_path(rel: str) -> str:
    """A path for a log line: control characters (newlines in names) escaped, so one
    problem stays one line."""
    if rel.isprintable():
        return rel
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in rel)


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
        self.config = config
        self.queue = queue
        self._log = log
        self._stopping = stopping
        self._post = post
        self._take = take
        self._gone = gone
        self._candidates: dict[str, _Candidate] = {}
        self._bad: dict[str, FileSig] = {}
        # Closed after writing (Linux): such a file skips the rest of its wait.
        self.closes = CloseMarks()
        self._reading: dict[str, _Read] = {}
        self._to_read: deque[str] = deque()
        self._due: list[tuple[float, int, str]] = []  # heap; stale entries skipped
        self._seq = itertools.count()
        # The model's input (width, height): large JPEGs are checked at a reduced scale.
        self.target_size: tuple[int, int] | None = None

    # --- for the owner ------------------------------------------------------------------

    def is_waiting(self, rel: str) -> bool:
        """True while ``rel`` is in its wait."""
        return rel in self._candidates

    def waiting_under(self, prefix: str) -> set[str]:
        """The waiting files under ``prefix``."""
        return {r for r in self._candidates if r.startswith(prefix)}

    def forget(self, rel: str) -> None:
        """Stop waiting for ``rel`` and forget that it was bad (it went away)."""
        self._candidates.pop(rel, None)
        self._bad.pop(rel, None)
        self.closes.clear(rel)

    def is_bad(self, rel: str, sig: FileSig) -> bool:
        """True when ``rel`` was refused at this (size, mtime, ctime)."""
        return self._bad.get(rel) == sig

    def refuse(self, rel: str, sig: FileSig, reason: str) -> None:
        """Refuse ``rel`` at this (size, mtime, ctime): one ``not queued`` line, not repeated."""
        if self._bad.get(rel) != sig:
            self._bad[rel] = sig
            self._not_queued(rel, reason)

    def path_of(self, rel: str) -> Path:
        """The absolute path of a workspace-relative one."""
        return self.workspace.root / rel

    def _known(self, rel: str) -> bool:
        if rel.startswith("inbox/"):
            return True
        return self.queue.holds_path(rel)

    def waiting(self) -> int:
        """Files seen but not yet taken or refused (in their stability wait)."""
        return len(self._candidates)

    def next_due_in(self) -> float:
        """Seconds until the next waiting file should be looked at (capped)."""
        self._drop_stale()
        if not self._due:
            return MAX_WAIT_TICK
        return max(0.0, min(MAX_WAIT_TICK, self._due[0][0] - time.monotonic()))

    def wait_for(self, rel: str, *, replaces: str | None) -> None:
        """Start (or hurry) the stability wait of ``rel``."""
        cand = self._candidates.get(rel)
        now = time.monotonic()
        if cand is None:
            cand = _Candidate(rel=rel, replaces=replaces)
            self._candidates[rel] = cand
            self._schedule(cand, now)
            return
        cand.replaces = cand.replaces or replaces
        if cand.due > now + 0.05:
            self._schedule(cand, now + 0.05)

    def _schedule(self, cand: _Candidate, due: float) -> None:
        cand.due = due
        if due != math.inf:
            heapq.heappush(self._due, (due, next(self._seq), cand.rel))

    def _drop_stale(self) -> None:
        while self._due:
            due, _seq, rel = self._due[0]
            cand = self._candidates.get(rel)
            if cand is not None and cand.due == due:
                return
            heapq.heappop(self._due)

    # --- the stability wait -----------------------------------------------------------

    def check_due(self) -> None:
        """Look at every waiting file whose time has come, then feed free readers."""
        now = time.monotonic()
        while not self._stopping.is_set():
            self._drop_stale()
            if not self._due or self._due[0][0] > now:
                break
            _due, _seq, rel = heapq.heappop(self._due)
            cand = self._candidates[rel]
            cand.due = math.inf  # _check schedules the next look
            self._guarded_check(cand)
        self._pump_reads()

    def _guarded_check(self, cand: _Candidate) -> None:
        try:
            self._check(cand)
        except MlupdatedError as exc:
            self._store_failed(cand, exc)

    def _pump_reads(self) -> None:
        while self._to_read and len(self._reading) < MAX_READS and not self._stopping.is_set():
            cand = self._candidates.get(self._to_read.popleft())
            if cand is None or not cand.waiting_for_reader:
                continue
            cand.waiting_for_reader = False
            self._guarded_check(cand)

    def _store_failed(self, cand: _Candidate, exc: MlupdatedError) -> None:
        # The queue could not be written (disk full, database locked): the file is fine,
        # so keep it waiting and try again later instead of spinning.
        cand.store_failures += 1
        delay = min(RETRY_BACKOFF_MAX, 2.0**cand.store_failures)
        self._schedule(cand, time.monotonic() + delay)
        if cand.store_failures == 1 or delay >= RETRY_BACKOFF_MAX:
            self._log.error(
                f"cannot queue {show_path(cand.rel)} yet: {exc}; retrying in {delay:g} s",
                path=cand.rel,
                error=str(exc),
            )

    def _drop(self, cand: _Candidate) -> None:
        self._candidates.pop(cand.rel, None)
        self.closes.clear(cand.rel)
        if cand.replaces:
            self._gone(cand.replaces)

    def _look(self, cand: _Candidate, path: Path) -> tuple[os.stat_result, str, bool] | None:
        """``path``'s status, kind and whether it is read through a link; None when the
        candidate was dropped, refused or put back to wait."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            self._drop(cand)
            return None
        except OSError as exc:
            self._retry_later(cand, f"cannot stat ({exc.strerror})")
            return None
        kind = file_kind(info.st_mode)
        if kind != "symlink":
            return info, kind, False
        if self.config.intake.follow_symlinks and inside(path, self.workspace.root):
            try:
                target = os.stat(path)
            except OSError:
                self._reject(cand, file_sig(info), "broken symbolic link")
                return None
            return target, file_kind(target.st_mode), True
        why = "symbolic link (not followed)"
        if self.config.intake.follow_symlinks:
            why = "symbolic link pointing outside the workspace (not followed)"
        self._reject(cand, file_sig(info), why)
        return None

    def _check(self, cand: _Candidate) -> None:
        path = self.path_of(cand.rel)
        stability = self.config.intake.stability_seconds
        now = time.monotonic()
        looked = self._look(cand, path)
        if looked is None:
            return
        info, kind, follow = looked
        sig = file_sig(info)
        if kind != "file":
            self._reject(cand, sig, f"not a regular file ({kind})")
            return
        # Closed after writing and not written since: the wait is over (if it decodes).
        closed = cand.rel in self.closes
        if sig != cand.sig:
            cand.sig, cand.since, cand.stable_failures = sig, now, 0
            if not closed:
                self._schedule(cand, now + stability)
                return
        elif now - cand.since < stability and not closed:
            self._schedule(cand, cand.since + stability)
            return
        if self._bad.get(cand.rel) == sig:
            self._drop(cand)
            return
        seen = self.queue.seen_file(cand.rel)
        if seen is not None and seen[:2] == (info.st_size, info.st_mtime) and self._known(cand.rel):
            self._drop(cand)
            return
        if cand.reading is not None:
            self._still_reading(cand, now)
            return
        if cand.read_result is not None:
            self._finish_read(cand, now)
            return
        if len(self._reading) >= MAX_READS:
            # Wait for a free reader without being looked at again and again.
            if not cand.waiting_for_reader:
                cand.waiting_for_reader = True
                self._to_read.append(cand.rel)
            self._schedule(cand, math.inf)
            return
        self._start_read(cand, path, sig, follow, now)

    # --- reading (off the worker thread: a read may block for a long time) -------------

    def _start_read(
        self, cand: _Candidate, path: Path, sig: FileSig, follow: bool, now: float
    ) -> None:
        read = _Read(sig=sig, started=now)
        cand.reading = read
        self._schedule(cand, now + SLOW_READ_SECONDS)
        self._reading[cand.rel] = read
        thread = threading.Thread(
            target=self._read,
            args=(cand.rel, path, read, follow, self.config.intake.max_pixels, self.target_size),
            name="mlupdated-intake-read",
            daemon=True,
        )
        thread.start()

    def _read(
        self,
        rel: str,
        path: Path,
        read: _Read,
        follow: bool,
        max_pixels: int,
        target_size: tuple[int, int] | None,
    ) -> None:
        """Reader thread: decode and hash, then hand the outcome back to the worker."""
        try:
            check_image(path, max_pixels=max_pixels, target_size=target_size)
            digest, size = sha256_file(path, follow_symlinks=follow)
            outcome = ReadResult("ok", digest=digest, size=size)
        except ImageError as exc:
            outcome = ReadResult("undecodable", reason=exc.reason)
        except PermissionError:
            outcome = ReadResult("denied")
        except FileNotFoundError:
            outcome = ReadResult("gone")
        except OSError as exc:
            outcome = ReadResult("error", reason=f"cannot read ({exc.strerror or exc})")
        except Exception as exc:  # a decoder bug must not lose the file: retry later
            outcome = ReadResult("error", reason=f"cannot read ({exc})")
        self._post(ReadDone(rel, read, outcome))

    def read_done(self, rel: str, read: _Read, outcome: ReadResult) -> None:
        """Worker thread: a reader finished; continue where ``_check`` left off."""
        if self._reading.get(rel) is read:
            del self._reading[rel]
        self._pump_reads()
        cand = self._candidates.get(rel)
        if cand is None or cand.reading is not read:
            return  # the file went away (or was re-considered) meanwhile
        cand.reading = None
        cand.read_result = (read, outcome)
        self._schedule(cand, time.monotonic())
        try:
            self._finish_read(cand, time.monotonic())
        except MlupdatedError as exc:
            self._store_failed(cand, exc)

    def _still_reading(self, cand: _Candidate, now: float) -> None:
        read = cand.reading
        assert read is not None
        self._schedule(cand, now + SLOW_READ_SECONDS)
        if not read.slow_logged and now - read.started >= SLOW_READ_SECONDS:
            read.slow_logged = True
            self._log.warning(
                f"waiting for {show_path(cand.rel)}: reading it has taken "
                f"{now - read.started:.0f} s (a cloud placeholder not downloaded yet?)",
                path=cand.rel,
            )

    def _finish_read(self, cand: _Candidate, now: float) -> None:
        assert cand.read_result is not None
        read, outcome = cand.read_result
        cand.read_result = None
        sig = read.sig
        kind = outcome.kind
        if kind == "undecodable":
            self._undecodable(cand, sig, outcome.reason)
            return
        if kind == "denied":
            self._reject(cand, sig, "permission denied")
            return
        if kind == "gone":
            self._drop(cand)
            return
        if kind == "error":
            self._retry_later(cand, outcome.reason)
            return
        digest, size = outcome.digest, outcome.size
        path = self.path_of(cand.rel)
        try:
            after = os.stat(path) if self.config.intake.follow_symlinks else os.lstat(path)
        except OSError:
            self._drop(cand)
            return
        if file_sig(after) != sig or size != sig[0]:
            self.closes.clear(cand.rel)  # written while we read: wait the whole period
            cand.sig, cand.since = file_sig(after), now
            self._schedule(cand, now + self.config.intake.stability_seconds)
            return
        # If the queue cannot be written, _take raises: the outcome is kept and the file
        # stays a candidate, retried with back-off.
        cand.read_result = (read, outcome)
        self._take(cand.rel, after.st_size, after.st_mtime, digest)
        cand.read_result = None
        self._candidates.pop(cand.rel, None)
        self.closes.clear(cand.rel)
        if cand.replaces:
            self._gone(cand.replaces)

    def _retry_later(self, cand: _Candidate, why: str) -> None:
        cand.read_failures += 1
        delay = min(RETRY_BACKOFF_MAX, self.config.intake.stability_seconds * 2**cand.read_failures)
        self._schedule(cand, time.monotonic() + max(delay, 0.5))
        if cand.read_failures == 3:
            self._log.warning(f"waiting for {show_path(cand.rel)}: {why}", path=cand.rel)

    def _undecodable(self, cand: _Candidate, sig: FileSig, reason: str) -> None:
        if cand.rel in self.closes:
            # A close ends the wait only for a file that decodes: back to the plain wait.
            self.closes.clear(cand.rel)
            self._log.debug(
                f"waiting for {show_path(cand.rel)}: closed, not decodable yet; "
                "waiting the whole stability period",
                path=cand.rel,
            )
        cand.stable_failures += 1
        if cand.stable_failures < BAD_AFTER_STABLE_CHECKS:
            # Maybe a writer that paused (a pre-allocated file being filled): look again.
            self._schedule(cand, time.monotonic() + max(self.config.intake.stability_seconds, 0.2))
            return
        self._reject(cand, sig, reason)

    def _reject(self, cand: _Candidate, sig: FileSig, reason: str) -> None:
        self._candidates.pop(cand.rel, None)
        self.closes.clear(cand.rel)
        if self._bad.get(cand.rel) != sig:
            self._bad[cand.rel] = sig
            self._not_queued(cand.rel, reason)
        if cand.replaces:
            self._gone(cand.replaces)

    def _not_queued(self, rel: str, reason: str) -> None:
        self._log.warning(f"not queued: {show_path(rel)}: {reason}", path=rel, reason=reason)
        try:
            self.queue.record_error("intake", rel, reason)
        except MlupdatedError as exc:
            self._log.error("cannot record an intake error", error=str(exc))
