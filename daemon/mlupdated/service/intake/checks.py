"""One look at a file in its stability wait, and what a finished read means.

``Checks`` decides each waiting file's next step for ``StabilityWait`` (which owns it,
and the helpers it shares with it: the ``Waiting`` records, ``CloseMarks``, ``Readers``
and ``Refusals``). A look ends in one of: wait longer (a new due time), start a read, a
retry with back-off, a refusal, a drop (the file went away), or — once a read shows the
file complete and unchanged — the ``take`` callback, followed by ``gone`` for a file it
replaced by a rename.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import MlupdatedError
from ..config import Config
from ..queue import Queue
from ..workspace import Workspace
from .closes import CloseMarks
from .events import ReadResult
from .filters import file_kind, file_sig, inside, show_path
from .reading import Readers
from .refusals import Refusals
from .waiting import Candidate, FileSig, Read, Waiting

# Stable but undecodable: look once more after another stability period before calling
# it bad, so a pre-allocated file whose writer pauses is not reported for nothing.
BAD_AFTER_STABLE_CHECKS = 2
# Read errors that are not the file's fault (cloud placeholders, flaky mounts): retry.
RETRY_BACKOFF_MAX = 60.0


class Checks:
    """The checks of the waiting files (worker thread only; see the module docstring).

    ``config`` and ``target_size`` (the model's input (width, height): large JPEGs are
    checked at a reduced scale) are replaced by the owner when they change.
    """

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        queue: Queue,
        *,
        log: Any,
        waiting: Waiting,
        closes: CloseMarks,
        readers: Readers,
        refusals: Refusals,
        take: Callable[[str, int, float, str], bool],
        gone: Callable[[str], None],
    ) -> None:
        self.workspace = workspace
        self.config = config
        self.queue = queue
        self._log = log
        self._waiting = waiting
        self._closes = closes
        self._readers = readers
        self._refusals = refusals
        self._take = take
        self._gone = gone
        self.target_size: tuple[int, int] | None = None

    def path_of(self, rel: str) -> Path:
        """The absolute path of a workspace-relative one."""
        return self.workspace.root / rel

    def check(self, cand: Candidate) -> None:
        """Look at ``cand`` (its time has come, or a reader is free for it)."""
        try:
            self._check(cand)
        except MlupdatedError as exc:
            self._store_failed(cand, exc)

    def _known(self, rel: str) -> bool:
        if rel.startswith("inbox/"):
            return True
        return self.queue.holds_path(rel)

    def _check(self, cand: Candidate) -> None:
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
        closed = cand.rel in self._closes
        if sig != cand.sig:
            cand.sig, cand.since, cand.stable_failures = sig, now, 0
            if not closed:
                self._waiting.schedule(cand, now + stability)
                return
        elif now - cand.since < stability and not closed:
            self._waiting.schedule(cand, cand.since + stability)
            return
        if self._refusals.is_bad(cand.rel, sig):
            self._drop(cand)
            return
        seen = self.queue.seen_file(cand.rel)
        if seen is not None and seen[:2] == (info.st_size, info.st_mtime) and self._known(cand.rel):
            self._drop(cand)
            return
        if cand.reading is not None:
            self._waiting.schedule(cand, self._readers.still_reading(cand, now))
            return
        if cand.read_result is not None:
            self._finish_read(cand, now)
            return
        if self._readers.busy():
            # Wait for a free reader without being looked at again and again.
            self._readers.wait_turn(cand)
            self._waiting.schedule(cand, math.inf)
            return
        self._start_read(cand, path, sig, follow, now)

    def _start_read(
        self, cand: Candidate, path: Path, sig: FileSig, follow: bool, now: float
    ) -> None:
        due = self._readers.start(
            cand,
            path,
            sig,
            follow,
            now,
            max_pixels=self.config.intake.max_pixels,
            target_size=self.target_size,
        )
        self._waiting.schedule(cand, due)

    def _look(self, cand: Candidate, path: Path) -> tuple[os.stat_result, str, bool] | None:
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

    def read_back(self, rel: str, read: Read, outcome: ReadResult) -> None:
        """A reader finished ``read`` of ``rel``: continue where ``_check`` left off."""
        cand = self._waiting.get(rel)
        if cand is None or cand.reading is not read:
            return  # the file went away (or was re-considered) meanwhile
        cand.reading = None
        cand.read_result = (read, outcome)
        self._waiting.schedule(cand, time.monotonic())
        try:
            self._finish_read(cand, time.monotonic())
        except MlupdatedError as exc:
            self._store_failed(cand, exc)

    def _finish_read(self, cand: Candidate, now: float) -> None:
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
            self._closes.clear(cand.rel)  # written while we read: wait the whole period
            cand.sig, cand.since = file_sig(after), now
            self._waiting.schedule(cand, now + self.config.intake.stability_seconds)
            return
        # If the queue cannot be written, _take raises: the outcome is kept and the file
        # stays a candidate, retried with back-off.
        cand.read_result = (read, outcome)
        self._take(cand.rel, after.st_size, after.st_mtime, digest)
        cand.read_result = None
        self._waiting.pop(cand.rel)
        self._closes.clear(cand.rel)
        if cand.replaces:
            self._gone(cand.replaces)

    def _store_failed(self, cand: Candidate, exc: MlupdatedError) -> None:
        # The queue could not be written (disk full, database locked): the file is fine,
        # so keep it waiting and try again later instead of spinning.
        cand.store_failures += 1
        delay = min(RETRY_BACKOFF_MAX, 2.0**cand.store_failures)
        self._waiting.schedule(cand, time.monotonic() + delay)
        if cand.store_failures == 1 or delay >= RETRY_BACKOFF_MAX:
            self._log.error(
                f"cannot queue {show_path(cand.rel)} yet: {exc}; retrying in {delay:g} s",
                path=cand.rel,
                error=str(exc),
            )

    def _drop(self, cand: Candidate) -> None:
        self._waiting.pop(cand.rel)
        self._closes.clear(cand.rel)
        if cand.replaces:
            self._gone(cand.replaces)

    def _retry_later(self, cand: Candidate, why: str) -> None:
        cand.read_failures += 1
        delay = min(RETRY_BACKOFF_MAX, self.config.intake.stability_seconds * 2**cand.read_failures)
        self._waiting.schedule(cand, time.monotonic() + max(delay, 0.5))
        if cand.read_failures == 3:
            self._log.warning(f"waiting for {show_path(cand.rel)}: {why}", path=cand.rel)

    def _undecodable(self, cand: Candidate, sig: FileSig, reason: str) -> None:
        if cand.rel in self._closes:
            # A close ends the wait only for a file that decodes: back to the plain wait.
            self._closes.clear(cand.rel)
            self._log.debug(
                f"waiting for {show_path(cand.rel)}: closed, not decodable yet; "
                "waiting the whole stability period",
                path=cand.rel,
            )
        cand.stable_failures += 1
        if cand.stable_failures < BAD_AFTER_STABLE_CHECKS:
            # Maybe a writer that paused (a pre-allocated file being filled): look again.
            self._waiting.schedule(
                cand, time.monotonic() + max(self.config.intake.stability_seconds, 0.2)
            )
            return
        self._reject(cand, sig, reason)

    def _reject(self, cand: Candidate, sig: FileSig, reason: str) -> None:
        self._waiting.pop(cand.rel)
        self._closes.clear(cand.rel)
        self._refusals.refuse(cand.rel, sig, reason)
        if cand.replaces:
            self._gone(cand.replaces)
