"""What intake does with a path: wait until the file is complete, then take it.

``Arrivals`` holds every decision of intake and runs on its worker thread only (see
``intake.py`` for the threads): the stability wait (size and mtime unchanged for
``stability_seconds`` *and* the file decodes as an image), hashing, queueing a
correction or handing an inbox photo over, moves (relabel), removals (retract), the
full rescan, and the mount-flap rule: when ``corrections/``, ``inbox/`` or a whole
label folder is missing, nothing under it is treated as removed.
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

from ..errors import ImageError, MlupdatedError
from .config import Config
from .filters import (
    check_image,
    file_kind,
    ignored_name,
    ignored_relpath,
    inside,
    is_mount_point,
    sha256_file,
)
from .queue import CorrectionChange, Queue
from .workspace import Workspace, model_labels

TOPS = ("corrections", "inbox")
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


@dataclass
class _Read:
    """One decode-and-hash of a file at a given (size, mtime), on a reader thread."""

    sig: tuple[int, int]
    started: float
    slow_logged: bool = False


@dataclass
class _Candidate:
    rel: str
    sig: tuple[int, int] | None = None
    since: float = 0.0
    due: float = math.inf
    stable_failures: int = 0
    read_failures: int = 0
    store_failures: int = 0
    replaces: str | None = None
    waiting_for_reader: bool = False
    reading: _Read | None = None
    read_result: tuple[_Read, tuple[Any, ...]] | None = None


def _show(rel: str) -> str:
    """A path for a log line: control characters (newlines in names) escaped, so one
    problem stays one line."""
    if rel.isprintable():
        return rel
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in rel)


class Arrivals:
    """Intake's decisions about files (worker thread only; see the module docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        queue: Queue,
        *,
        on_correction: Callable[[CorrectionChange], None],
        on_inbox: Callable[[Path, str], None],
        log: Any,
        stopping: threading.Event,
        post: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self.workspace = workspace
        self.config = config
        self.queue = queue
        self._on_correction = on_correction
        self._on_inbox = on_inbox
        self._log = log
        self._stopping = stopping
        self._post = post
        self._reading: dict[str, _Read] = {}
        self._to_read: deque[str] = deque()
        self._due: list[tuple[float, int, str]] = []  # heap; stale entries skipped
        self._seq = itertools.count()
        self._candidates: dict[str, _Candidate] = {}
        self._bad: dict[str, tuple[int, int]] = {}
        self._labels: list[str] = []
        self._labels_sig: tuple[int, int] | None = None
        self._unavailable: set[str] = set()
        self._mounts: set[str] = set()
        self._mount_checked: set[str] = set()
        self._lock = threading.Lock()

    def waiting(self) -> int:
        """Files seen but not yet taken or refused (in their stability wait)."""
        return len(self._candidates)

    def unavailable(self) -> list[str]:
        """Sources (folders, relative) that are missing right now."""
        with self._lock:
            return sorted(self._unavailable)

    def next_due_in(self) -> float:
        """Seconds until the next waiting file should be looked at (capped)."""
        self._drop_stale()
        if not self._due:
            return MAX_WAIT_TICK
        return max(0.0, min(MAX_WAIT_TICK, self._due[0][0] - time.monotonic()))

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

    # --- paths ------------------------------------------------------------------------

    def rel(self, path: str) -> str:
        """``path`` relative to the workspace root, forward slashes."""
        return self.workspace.relative(path)

    def _abs(self, rel: str) -> Path:
        return self.workspace.root / rel

    def _watched(self, rel: str) -> bool:
        parts = rel.split("/")
        return len(parts) >= 2 and parts[0] in TOPS and ".." not in parts

    def _ignored(self, rel: str) -> bool:
        return ignored_relpath(rel, self.config.intake.ignore)

    def consider(self, path: str, *, replaces: str | None = None) -> None:
        """A hint that ``path`` may be new or changed: start (or hurry) its stability wait."""
        rel = self.rel(path)
        if not self._watched(rel) or self._ignored(rel):
            if replaces:
                self.gone(replaces, is_dir=False)
            return
        cand = self._candidates.get(rel)
        now = time.monotonic()
        if cand is None:
            cand = _Candidate(rel=rel, replaces=replaces)
            self._candidates[rel] = cand
            self._schedule(cand, now)
        else:
            if cand.due > now + 0.05:
                self._schedule(cand, now + 0.05)
            cand.replaces = cand.replaces or replaces

    def walk_into(self, directory: str) -> None:
        """A folder appeared (created or moved in): consider everything below it."""
        for path in self._walk(Path(directory)):
            self.consider(str(path))

    def _walk(self, directory: Path) -> list[Path]:
        """Every non-directory entry below ``directory``, skipping ignored names and never
        descending into symlinked folders."""
        found: list[Path] = []
        stack = [directory]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue
            for entry in entries:
                if ignored_name(entry.name, self.config.intake.ignore):
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    stack.append(Path(entry.path))
                else:
                    found.append(Path(entry.path))
        return found

    # --- removals and moves -----------------------------------------------------------

    def _dir_available(self, rel: str) -> bool:
        """A source folder is there: it exists and, if it was a mount point, still is one
        (an unmounted share leaves an empty folder that must not read as "all deleted")."""
        path = self.workspace.root / rel
        if not path.is_dir():
            return False
        if rel in self._mounts:
            return is_mount_point(path)
        if rel not in self._mount_checked:  # once per sweep: mounts made later count too
            self._mount_checked.add(rel)
            if is_mount_point(path):
                self._mounts.add(rel)
        return True

    def _source_available(self, rel: str) -> bool:
        """False when the top folder or the label folder holding ``rel`` is missing."""
        parts = rel.split("/")
        if not self._dir_available(parts[0]):
            self._mark_unavailable(parts[0])
            return False
        if parts[0] == "corrections" and len(parts) >= 3:
            label = f"{parts[0]}/{parts[1]}"
            if not self._dir_available(label):
                self._mark_unavailable(label)
                return False
        return True

    def _mark_unavailable(self, rel: str) -> None:
        with self._lock:
            if rel in self._unavailable:
                return
            self._unavailable.add(rel)
        self._log.warning(
            f"source unavailable: {rel} is missing; nothing under it is treated as removed "
            "until it returns",
            path=rel,
        )

    def gone(self, rel: str, *, is_dir: bool) -> None:
        """``rel`` (a file, or a folder with ``is_dir``) was removed: retract what it held,
        unless its source is unavailable (a mount flap) or a new file took its name."""
        if not self._watched(rel) and rel not in TOPS:
            return
        if is_dir or rel in TOPS:
            prefix = rel.rstrip("/") + "/"
            paths = set(self.queue.correction_paths(prefix)) | set(self.queue.seen_paths(prefix))
            paths |= {r for r in self._candidates if r.startswith(prefix)}
            for path in sorted(paths):
                self.gone(path, is_dir=False)
            return
        if os.path.lexists(self._abs(rel)):
            self.consider(str(self._abs(rel)))  # replaced by a new file of that name
            return
        self._candidates.pop(rel, None)
        self._bad.pop(rel, None)
        if not self._source_available(rel):
            return
        if rel.startswith("corrections/") and self.queue.retract_path(rel):
            self._log.info(
                f"correction retracted: {_show(rel)} was removed before training", path=rel
            )
        self.queue.forget_seen(rel)

    def moved(self, src: str, dest: str, *, is_dir: bool) -> None:
        """A rename inside or into the watched folders: relabel, or take the new path."""
        src_rel, dest_rel = self.rel(src), self.rel(dest)
        dest_ok = self._watched(dest_rel) and not self._ignored(dest_rel)
        if is_dir:
            if dest_ok:
                self.walk_into(dest)
            src_prefix = src_rel.rstrip("/") + "/"
            for old in self.queue.seen_paths(src_prefix):
                new = dest_rel + "/" + old[len(src_prefix) :]
                if not (dest_ok and self._fast_move(old, new)):
                    self.gone(old, is_dir=False)
            for old in list(self.queue.correction_paths(src_prefix)):
                self.gone(old, is_dir=False)
            return
        if dest_ok and self._fast_move(src_rel, dest_rel):
            return
        if dest_ok:
            self.consider(dest, replaces=src_rel if self._watched(src_rel) else None)
        elif self._watched(src_rel):
            self.gone(src_rel, is_dir=False)

    def _fast_move(self, src_rel: str, dest_rel: str) -> bool:
        """A rename keeps the bytes: reuse the known hash instead of waiting and decoding."""
        seen = self.queue.seen_file(src_rel)
        if seen is None:
            return False
        try:
            info = os.lstat(self._abs(dest_rel))
        except OSError:
            return False
        if file_kind(info.st_mode) != "file" or (info.st_size, info.st_mtime) != seen[:2]:
            return False
        try:
            if not self._take(dest_rel, info.st_size, info.st_mtime, seen[2]):
                return False
        except MlupdatedError:
            return False  # the slow path (a candidate, retried with back-off) takes over
        self.gone(src_rel, is_dir=False)
        return True

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
                f"cannot queue {_show(cand.rel)} yet: {exc}; retrying in {delay:g} s",
                path=cand.rel,
                error=str(exc),
            )

    def _drop(self, cand: _Candidate) -> None:
        self._candidates.pop(cand.rel, None)
        if cand.replaces:
            self.gone(cand.replaces, is_dir=False)

    def _check(self, cand: _Candidate) -> None:
        path = self._abs(cand.rel)
        stability = self.config.intake.stability_seconds
        now = time.monotonic()
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            self._drop(cand)
            return
        except OSError as exc:
            self._retry_later(cand, f"cannot stat ({exc.strerror})")
            return
        kind = file_kind(info.st_mode)
        follow = False
        if kind == "symlink":
            root = self.workspace.root
            if self.config.intake.follow_symlinks and inside(path, root):
                try:
                    info = os.stat(path)
                except OSError:
                    self._reject(cand, (info.st_size, info.st_mtime_ns), "broken symbolic link")
                    return
                kind, follow = file_kind(info.st_mode), True
            else:
                why = "symbolic link (not followed)"
                if self.config.intake.follow_symlinks:
                    why = "symbolic link pointing outside the workspace (not followed)"
                self._reject(cand, (info.st_size, info.st_mtime_ns), why)
                return
        sig = (info.st_size, info.st_mtime_ns)
        if kind != "file":
            self._reject(cand, sig, f"not a regular file ({kind})")
            return
        if sig != cand.sig:
            cand.sig, cand.since, cand.stable_failures = sig, now, 0
            self._schedule(cand, now + stability)
            return
        if now - cand.since < stability:
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
        self, cand: _Candidate, path: Path, sig: tuple[int, int], follow: bool, now: float
    ) -> None:
        read = _Read(sig=sig, started=now)
        cand.reading = read
        self._schedule(cand, now + SLOW_READ_SECONDS)
        self._reading[cand.rel] = read
        thread = threading.Thread(
            target=self._read,
            args=(cand.rel, path, read, follow, self.config.intake.max_pixels),
            name="mlupdated-intake-read",
            daemon=True,
        )
        thread.start()

    def _read(self, rel: str, path: Path, read: _Read, follow: bool, max_pixels: int) -> None:
        """Reader thread: decode and hash, then hand the outcome back to the worker."""
        try:
            check_image(path, max_pixels=max_pixels)
            digest, size = sha256_file(path, follow_symlinks=follow)
            outcome: tuple[Any, ...] = ("ok", digest, size)
        except ImageError as exc:
            outcome = ("undecodable", exc.reason)
        except PermissionError:
            outcome = ("denied",)
        except FileNotFoundError:
            outcome = ("gone",)
        except OSError as exc:
            outcome = ("error", f"cannot read ({exc.strerror or exc})")
        except Exception as exc:  # a decoder bug must not lose the file: retry later
            outcome = ("error", f"cannot read ({exc})")
        self._post(("read", rel, read, outcome))

    def read_done(self, rel: str, read: _Read, outcome: tuple[Any, ...]) -> None:
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
                f"waiting for {_show(cand.rel)}: reading it has taken "
                f"{now - read.started:.0f} s (a cloud placeholder not downloaded yet?)",
                path=cand.rel,
            )

    def _finish_read(self, cand: _Candidate, now: float) -> None:
        assert cand.read_result is not None
        read, outcome = cand.read_result
        cand.read_result = None
        sig = read.sig
        kind = outcome[0]
        if kind == "undecodable":
            self._undecodable(cand, sig, outcome[1])
            return
        if kind == "denied":
            self._reject(cand, sig, "permission denied")
            return
        if kind == "gone":
            self._drop(cand)
            return
        if kind == "error":
            self._retry_later(cand, outcome[1])
            return
        digest, size = outcome[1], outcome[2]
        path = self._abs(cand.rel)
        try:
            after = os.stat(path) if self.config.intake.follow_symlinks else os.lstat(path)
        except OSError:
            self._drop(cand)
            return
        if (after.st_size, after.st_mtime_ns) != sig or size != sig[0]:
            cand.sig, cand.since = (after.st_size, after.st_mtime_ns), now
            self._schedule(cand, now + self.config.intake.stability_seconds)
            return
        # If the queue cannot be written, _take raises: the outcome is kept and the file
        # stays a candidate, retried with back-off.
        cand.read_result = (read, outcome)
        self._take(cand.rel, after.st_size, after.st_mtime, digest)
        cand.read_result = None
        self._candidates.pop(cand.rel, None)
        if cand.replaces:
            self.gone(cand.replaces, is_dir=False)

    def _known(self, rel: str) -> bool:
        if rel.startswith("inbox/"):
            return True
        return self.queue.holds_path(rel)

    def _retry_later(self, cand: _Candidate, why: str) -> None:
        cand.read_failures += 1
        delay = min(RETRY_BACKOFF_MAX, self.config.intake.stability_seconds * 2**cand.read_failures)
        self._schedule(cand, time.monotonic() + max(delay, 0.5))
        if cand.read_failures == 3:
            self._log.warning(f"waiting for {_show(cand.rel)}: {why}", path=cand.rel)

    def _undecodable(self, cand: _Candidate, sig: tuple[int, int], reason: str) -> None:
        cand.stable_failures += 1
        if cand.stable_failures < BAD_AFTER_STABLE_CHECKS:
            # Maybe a writer that paused (a pre-allocated file being filled): look again.
            self._schedule(cand, time.monotonic() + max(self.config.intake.stability_seconds, 0.2))
            return
        self._reject(cand, sig, reason)

    def _reject(self, cand: _Candidate, sig: tuple[int, int], reason: str) -> None:
        self._candidates.pop(cand.rel, None)
        if self._bad.get(cand.rel) != sig:
            self._bad[cand.rel] = sig
            self._not_queued(cand.rel, reason)
        if cand.replaces:
            self.gone(cand.replaces, is_dir=False)

    def _not_queued(self, rel: str, reason: str) -> None:
        self._log.warning(f"not queued: {_show(rel)}: {reason}", path=rel, reason=reason)
        try:
            self.queue.record_error("intake", rel, reason)
        except MlupdatedError as exc:
            self._log.error("cannot record an intake error", error=str(exc))

    # --- taking a file ----------------------------------------------------------------

    def _take(self, rel: str, size: int, mtime: float, digest: str) -> bool:
        """Queue a complete, decodable file; True if it was accepted."""
        parts = rel.split("/")
        if parts[0] == "inbox":
            try:
                self._on_inbox(self._abs(rel), digest)
            except Exception as exc:
                self._log.error(f"inbox handler failed for {_show(rel)}", path=rel, error=str(exc))
            self.queue.mark_seen(rel, size, mtime, digest)
            return True
        if len(parts) < 3:
            self._reject_name(
                rel,
                size,
                mtime,
                f"not inside a label folder (model labels: {', '.join(self._labels)})",
            )
            return False
        label = parts[1]
        if label not in self._labels:
            self._reject_name(
                rel,
                size,
                mtime,
                f"unknown label '{label}' (model labels: {', '.join(self._labels)})",
            )
            return False
        change = self.queue.upsert_correction(
            path=rel, sha256=digest, label=label, size=size, mtime=mtime
        )
        self._log_change(change)
        if change.kind != "unchanged":
            try:
                self._on_correction(change)
            except Exception as exc:
                self._log.error("correction handler failed", path=rel, error=str(exc))
        return True

    def _reject_name(self, rel: str, size: int, mtime: float, reason: str) -> None:
        try:
            sig = (size, os.lstat(self._abs(rel)).st_mtime_ns)
        except OSError:
            sig = (size, int(mtime * 1e9))
        if self._bad.get(rel) != sig:
            self._bad[rel] = sig
            self._not_queued(rel, reason)

    def _log_change(self, change: CorrectionChange) -> None:
        c = change.correction
        if change.kind == "new":
            self._log.info(
                f"correction queued: {_show(change.path)} as {c.label}",
                path=change.path,
                label=c.label,
                id=c.id,
            )
        elif change.kind == "duplicate":
            self._log.info(
                f"duplicate: {_show(change.path)} holds the same image as {_show(c.path)}",
                path=change.path,
                id=c.id,
            )
        elif change.kind == "relabelled":
            self._log.info(
                f"relabelled: {_show(change.path)}: {change.previous_label} → {c.label} "
                "(the latest drop wins)",
                path=change.path,
                id=c.id,
                previous=change.previous_label,
                label=c.label,
            )

    # --- the full rescan ---------------------------------------------------------------

    def load_labels(self) -> None:
        """(Re)read the model's class labels when ``current.mlmodel`` changed."""
        model = self.workspace.current_model
        try:
            info = model.stat()
            sig = (info.st_size, info.st_mtime_ns)
            if sig == self._labels_sig:
                return
            self._labels = model_labels(model)
            self._labels_sig = sig
        except (OSError, MlupdatedError) as exc:
            self._log.warning(
                "cannot read the model's labels; keeping the previous ones", error=str(exc)
            )

    def sweep(self) -> list[str]:
        """Walk both folders: take what is new or changed, retract what is gone.

        Returns the sources that were unavailable and are back (their watches need
        renewing).
        """
        self.load_labels()
        self._mount_checked.clear()
        seen = self.queue.seen_files()
        known = self.queue.correction_paths()
        found: set[str] = set()
        available: dict[str, bool] = {}
        for top in TOPS:
            top_dir = self.workspace.root / top
            available[top] = self._dir_available(top)
            if not available[top]:
                self._mark_unavailable(top)
                continue
            for path in self._walk(top_dir):
                rel = self.rel(str(path))
                if self._ignored(rel):
                    continue
                found.add(rel)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if self._bad.get(rel) == (info.st_size, info.st_mtime_ns):
                    continue
                record = seen.get(rel)
                if (
                    record is not None
                    and record[:2] == (info.st_size, info.st_mtime)
                    and (top == "inbox" or rel in known)
                ):
                    continue
                self.consider(str(path))
        missing_labels = {
            f"corrections/{label}"
            for label in self._labels
            if available["corrections"] and not self._dir_available(f"corrections/{label}")
        }
        for rel in missing_labels:
            self._mark_unavailable(rel)
        # What was unavailable and is back: say so, and re-watch it (the old watch died).
        with self._lock:
            back = {r for r in self._unavailable if self._dir_available(r)}
            self._unavailable -= back
        for rel in sorted(back):
            self._log.info(f"source available again: {rel}", path=rel)
        for rel in sorted((set(known) | set(seen)) - found):
            if rel in self._candidates or not self._watched(rel):
                continue
            if self._source_available(rel):
                self.gone(rel, is_dir=False)
        return sorted(back)
