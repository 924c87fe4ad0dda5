"""Intake: find the photos users drop, wait until they are complete, queue them.

Events are hints, the rescan is the truth. A watchdog observer (inotify, or polling
for network shares) only hands paths to a ``queue.Queue``; one worker thread owns all
decisions: it waits until a file's size and mtime have not changed for
``stability_seconds`` *and* it decodes as an image, hashes it, and then queues a
correction (``corrections/<Label>/…``) or hands it to the inbox (``inbox/…``).
A supervisor thread restarts a dead observer or worker, runs the periodic rescan,
and turns an inotify queue overflow into a rescan.

Nothing here modifies or deletes a user's file. A removed correction file is
retracted (if it was not trained yet); a file moved between label folders is
relabelled. If ``corrections/``, ``inbox/`` or a whole label folder disappears (a
network mount flapping), nothing is retracted: the source is marked unavailable
until it comes back.
"""

from __future__ import annotations

import errno
import logging
import os
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from ..errors import ImageError, MlupdatedError
from .config import Config
from .filters import check_image, file_kind, ignored_name, ignored_relpath, inside, sha256_file
from .queue import CorrectionChange, Queue
from .workspace import Workspace, model_labels

TOPS = ("corrections", "inbox")
SUPERVISE_SECONDS = 0.5
MAX_WAIT_TICK = 0.25
EVENT_BATCH = 5000
# Stable but undecodable: look once more after another stability period before calling
# it bad, so a pre-allocated file whose writer pauses is not reported for nothing.
BAD_AFTER_STABLE_CHECKS = 2
# Read errors that are not the file's fault (cloud placeholders, flaky mounts): retry.
RETRY_BACKOFF_MAX = 60.0
_LIMIT_ERRNOS = {errno.ENOSPC, errno.EMFILE, errno.ENFILE}


@dataclass
class _Candidate:
    rel: str
    sig: tuple[int, int] | None = None
    since: float = 0.0
    due: float = 0.0
    stable_failures: int = 0
    read_failures: int = 0
    store_failures: int = 0
    replaces: str | None = None


class _Handler(FileSystemEventHandler):
    """Only hands paths over; never touches the file system or the database."""

    def __init__(self, events: queue_mod.Queue[tuple[Any, ...]]) -> None:
        self._events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            kind = event.event_type
            src = os.fsdecode(event.src_path)
            if kind == "moved":
                self._events.put(("moved", src, os.fsdecode(event.dest_path), event.is_directory))
            elif kind == "deleted":
                self._events.put(("gone", src, event.is_directory))
            elif kind in ("created", "modified", "closed"):
                if event.is_directory:
                    if kind == "created":
                        self._events.put(("dir", src))
                else:
                    self._events.put(("path", src))
        except Exception:  # an exception here would kill the observer thread
            pass


class _OverflowWatch(logging.Handler):
    """watchdog only logs an inotify queue overflow; turn that into a rescan request."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__(level=logging.WARNING)
        self._flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._flag.set()


def _show(rel: str) -> str:
    """A path for a log line: control characters (newlines in names) escaped, so one
    problem stays one line."""
    if rel.isprintable():
        return rel
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in rel)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


class Intake:
    """Watches ``corrections/`` and ``inbox/`` of a workspace (see the module docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        queue: Queue,
        *,
        on_correction: Callable[[CorrectionChange], None],
        on_inbox: Callable[[Path, str], None],
        log: Any,
    ) -> None:
        self.workspace = workspace
        self.config = config
        self.queue = queue
        self._on_correction = on_correction
        self._on_inbox = on_inbox
        self._log = log
        self._events: queue_mod.Queue[tuple[Any, ...]] = queue_mod.Queue()
        self._candidates: dict[str, _Candidate] = {}
        self._bad: dict[str, tuple[int, int]] = {}
        self._labels: list[str] = []
        self._labels_sig: tuple[int, int] | None = None
        self._unavailable: set[str] = set()
        self._stop = threading.Event()
        self._overflow = threading.Event()
        self._overflow_watch = _OverflowWatch(self._overflow)
        self._observer: Any = None
        self._observer_kind = config.intake.observer
        self._fallback_reason: str | None = None
        self._worker: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._restarts = 0
        self._last_rescan: float | None = None
        self._last_rescan_mono = 0.0
        self._rescans = 0
        self._busy = threading.Event()
        self._state_lock = threading.Lock()
        self._observer_lock = threading.RLock()

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start watching; the first full rescan (the start-up sweep) runs at once."""
        self._stop.clear()
        self._load_labels()
        logging.getLogger("watchdog").addHandler(self._overflow_watch)
        self._start_worker()
        self._start_observer()
        self.rescan()
        self._supervisor = threading.Thread(
            target=self._supervise, name="mlupdated-intake-supervisor", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; a file half-way through its stability wait is taken next time."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        self._stop_observer(timeout)
        self._events.put(("wake",))
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        logging.getLogger("watchdog").removeHandler(self._overflow_watch)

    def update_config(self, config: Config) -> None:
        """Take a reloaded config (an observer kind change applies at the next restart)."""
        self.config = config

    def is_alive(self) -> bool:
        """True when the observer (and each of its watches) and the worker are running."""
        return self._observer_alive() and self._worker is not None and self._worker.is_alive()

    def status(self) -> dict[str, Any]:
        """What ``mlupdated status`` shows about intake."""
        with self._state_lock:
            unavailable = sorted(self._unavailable)
        return {
            "observer": self._observer_kind,
            "alive": self.is_alive(),
            "restarts": self._restarts,
            "source_available": not unavailable,
            "unavailable": unavailable,
            "last_rescan": _iso(self._last_rescan),
            "rescans": self._rescans,
            "waiting": len(self._candidates),
            "fallback_reason": self._fallback_reason,
        }

    def rescan(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """Ask for a full sweep; with ``wait``, return once the sweep itself has run."""
        done = threading.Event()
        self._last_rescan_mono = time.monotonic()
        self._events.put(("rescan", done))
        return done.wait(timeout) if wait else True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no event and no file is waiting (tests and shut-down use it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._events.unfinished_tasks == 0 and not self._candidates:
                return True
            time.sleep(0.05)
        return False

    # --- observer ---------------------------------------------------------------------

    def _make_observer(self, kind: str) -> Any:
        if kind == "polling":
            from watchdog.observers.polling import PollingObserver

            return PollingObserver(timeout=self.config.intake.polling_interval)
        from watchdog.observers import Observer

        return Observer()

    def _start_observer(self) -> None:
        with self._observer_lock:
            if self._observer is not None:
                return
            self._start_observer_locked()

    def _start_observer_locked(self) -> None:
        kind = self._observer_kind
        try:
            self._observer = self._schedule_and_start(kind)
        except OSError as exc:
            if kind == "polling" or exc.errno not in _LIMIT_ERRNOS:
                raise
            self._fallback_reason = f"{exc.strerror or exc} (errno {exc.errno})"
            self._log.warning(
                "native file events unavailable, falling back to polling: "
                f"{self._fallback_reason}; raise fs.inotify.max_user_watches or set "
                'observer = "polling"',
                reason=self._fallback_reason,
            )
            self._observer_kind = "polling"
            self._observer = self._schedule_and_start("polling")

    def _schedule_and_start(self, kind: str) -> Any:
        observer = self._make_observer(kind)
        handler = _Handler(self._events)
        for top in TOPS:
            path = self.workspace.root / top
            if path.is_dir():
                observer.schedule(handler, str(path), recursive=True)
        try:
            observer.start()
        except BaseException:
            try:
                observer.stop()
            except Exception:
                pass
            raise
        return observer

    def _stop_observer(self, timeout: float) -> None:
        with self._observer_lock:
            observer, self._observer = self._observer, None
        if observer is None:
            return
        try:
            observer.stop()
            observer.join(timeout)
        except Exception as exc:  # a broken observer must not stop shut-down
            self._log.warning("observer did not stop cleanly", error=str(exc))

    def _observer_alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(observer.emitters))

    def _restart_observer(self, why: str) -> None:
        with self._observer_lock:
            if self._stop.is_set():
                return
            self._restarts += 1
            self._log.warning(f"file observer {why}; restarting it", restarts=self._restarts)
            self._stop_observer(2.0)
            try:
                self._start_observer()
            except OSError as exc:
                self._log.error("cannot restart the file observer", error=str(exc))
        self.rescan()

    # --- supervisor -------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_SECONDS):
            try:
                if self._worker is None or not self._worker.is_alive():
                    self._restarts += 1
                    self._log.warning("intake worker died; restarting it", restarts=self._restarts)
                    self._start_worker()
                    self.rescan()
                if not self._stop.is_set() and not self._observer_alive():
                    self._restart_observer("stopped")
                if self._overflow.is_set():
                    self._overflow.clear()
                    self._log.warning("file event queue overflowed; rescanning")
                    self.rescan()
                interval = self.config.intake.rescan_seconds
                if time.monotonic() - self._last_rescan_mono >= interval:
                    self._last_rescan_mono = time.monotonic()
                    self.rescan()
            except Exception as exc:  # the supervisor must outlive anything it watches
                self._log.error("intake supervisor error", error=str(exc))

    # --- worker -----------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = threading.Thread(
            target=self._work, name="mlupdated-intake-worker", daemon=True
        )
        self._worker.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._events.get(timeout=self._next_due_in())]
            except queue_mod.Empty:
                batch = []
            # Take everything that is already waiting before looking at candidates, so a
            # burst of events costs one pass over the waiting files, not one per event.
            while batch and len(batch) < EVENT_BATCH:
                try:
                    batch.append(self._events.get_nowait())
                except queue_mod.Empty:
                    break
            for item in batch:
                try:
                    self._handle(item)
                except Exception as exc:
                    self._log.exception("intake could not handle an event", error=str(exc))
                finally:
                    self._events.task_done()
            try:
                self._check_due()
            except Exception as exc:
                self._log.exception("intake check failed", error=str(exc))

    def _next_due_in(self) -> float:
        if not self._candidates:
            return MAX_WAIT_TICK
        soonest = min(c.due for c in self._candidates.values())
        return max(0.0, min(MAX_WAIT_TICK, soonest - time.monotonic()))

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "path":
            self._consider(item[1])
        elif kind == "dir":
            self._walk_into(item[1])
        elif kind == "gone":
            self._gone(self._rel(item[1]), is_dir=item[2])
        elif kind == "moved":
            self._moved(item[1], item[2], is_dir=item[3])
        elif kind == "rescan":
            try:
                self._sweep()
            finally:
                item[1].set()

    # --- paths ------------------------------------------------------------------------

    def _rel(self, path: str) -> str:
        return self.workspace.relative(path)

    def _abs(self, rel: str) -> Path:
        return self.workspace.root / rel

    def _watched(self, rel: str) -> bool:
        parts = rel.split("/")
        return len(parts) >= 2 and parts[0] in TOPS and ".." not in parts

    def _ignored(self, rel: str) -> bool:
        return ignored_relpath(rel, self.config.intake.ignore)

    def _consider(self, path: str, *, replaces: str | None = None) -> None:
        rel = self._rel(path)
        if not self._watched(rel) or self._ignored(rel):
            if replaces:
                self._gone(replaces, is_dir=False)
            return
        cand = self._candidates.get(rel)
        now = time.monotonic()
        if cand is None:
            self._candidates[rel] = _Candidate(rel=rel, due=now, replaces=replaces)
        else:
            cand.due = min(cand.due, now + 0.05)
            cand.replaces = cand.replaces or replaces

    def _walk_into(self, directory: str) -> None:
        for path in self._walk(Path(directory)):
            self._consider(str(path))

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

    def _source_available(self, rel: str) -> bool:
        """False when the top folder or the label folder holding ``rel`` is missing."""
        parts = rel.split("/")
        top = self.workspace.root / parts[0]
        if not top.is_dir():
            self._mark_unavailable(parts[0])
            return False
        if parts[0] == "corrections" and len(parts) >= 3:
            label_dir = top / parts[1]
            if not label_dir.is_dir():
                self._mark_unavailable(f"{parts[0]}/{parts[1]}")
                return False
        return True

    def _mark_unavailable(self, rel: str) -> None:
        with self._state_lock:
            if rel in self._unavailable:
                return
            self._unavailable.add(rel)
        self._log.warning(
            f"source unavailable: {rel} is missing; nothing under it is treated as removed "
            "until it returns",
            path=rel,
        )

    def _gone(self, rel: str, *, is_dir: bool) -> None:
        if not self._watched(rel) and rel not in TOPS:
            return
        if is_dir or rel in TOPS:
            prefix = rel.rstrip("/") + "/"
            paths = set(self.queue.correction_paths(prefix)) | set(self.queue.seen_paths(prefix))
            paths |= {r for r in self._candidates if r.startswith(prefix)}
            for path in sorted(paths):
                self._gone(path, is_dir=False)
            return
        if os.path.lexists(self._abs(rel)):
            self._consider(str(self._abs(rel)))  # replaced by a new file of that name
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

    def _moved(self, src: str, dest: str, *, is_dir: bool) -> None:
        src_rel, dest_rel = self._rel(src), self._rel(dest)
        dest_ok = self._watched(dest_rel) and not self._ignored(dest_rel)
        if is_dir:
            if dest_ok:
                self._walk_into(dest)
            src_prefix = src_rel.rstrip("/") + "/"
            for old in self.queue.seen_paths(src_prefix):
                new = dest_rel + "/" + old[len(src_prefix) :]
                if not (dest_ok and self._fast_move(old, new)):
                    self._gone(old, is_dir=False)
            for old in list(self.queue.correction_paths(src_prefix)):
                self._gone(old, is_dir=False)
            return
        if dest_ok and self._fast_move(src_rel, dest_rel):
            return
        if dest_ok:
            self._consider(dest, replaces=src_rel if self._watched(src_rel) else None)
        elif self._watched(src_rel):
            self._gone(src_rel, is_dir=False)

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
        self._gone(src_rel, is_dir=False)
        return True

    # --- the stability wait -----------------------------------------------------------

    def _check_due(self) -> None:
        now = time.monotonic()
        for rel in [r for r, c in self._candidates.items() if c.due <= now]:
            if self._stop.is_set():
                return
            cand = self._candidates.get(rel)
            if cand is None:
                continue
            try:
                self._check(cand)
            except MlupdatedError as exc:
                # The queue could not be written (disk full, database locked): the file is
                # fine, so keep it waiting and try again later instead of spinning.
                cand.store_failures += 1
                delay = min(RETRY_BACKOFF_MAX, 2.0**cand.store_failures)
                cand.due = time.monotonic() + delay
                if cand.store_failures == 1 or delay >= RETRY_BACKOFF_MAX:
                    self._log.error(
                        f"cannot queue {_show(rel)} yet: {exc}; retrying in {delay:g} s",
                        path=rel,
                        error=str(exc),
                    )

    def _drop(self, cand: _Candidate) -> None:
        self._candidates.pop(cand.rel, None)
        if cand.replaces:
            self._gone(cand.replaces, is_dir=False)

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
            cand.due = now + stability
            return
        if now - cand.since < stability:
            cand.due = cand.since + stability
            return
        if self._bad.get(cand.rel) == sig:
            self._drop(cand)
            return
        seen = self.queue.seen_file(cand.rel)
        if seen is not None and seen[:2] == (info.st_size, info.st_mtime) and self._known(cand.rel):
            self._drop(cand)
            return
        try:
            check_image(path, max_pixels=self.config.intake.max_pixels)
            digest, size = sha256_file(path, follow_symlinks=follow)
        except ImageError as exc:
            self._undecodable(cand, sig, exc.reason)
            return
        except PermissionError:
            self._reject(cand, sig, "permission denied")
            return
        except FileNotFoundError:
            self._drop(cand)
            return
        except OSError as exc:
            self._retry_later(cand, f"cannot read ({exc.strerror or exc})")
            return
        try:
            after = os.stat(path) if follow else os.lstat(path)
        except OSError:
            self._drop(cand)
            return
        if (after.st_size, after.st_mtime_ns) != sig or size != info.st_size:
            cand.sig, cand.since = (after.st_size, after.st_mtime_ns), now
            cand.due = now + stability
            return
        # If the queue cannot be written, _take raises and the file stays a candidate.
        self._take(cand.rel, info.st_size, info.st_mtime, digest)
        self._candidates.pop(cand.rel, None)
        if cand.replaces:
            self._gone(cand.replaces, is_dir=False)

    def _known(self, rel: str) -> bool:
        if rel.startswith("inbox/"):
            return True
        return self.queue.holds_path(rel)

    def _retry_later(self, cand: _Candidate, why: str) -> None:
        cand.read_failures += 1
        delay = min(RETRY_BACKOFF_MAX, self.config.intake.stability_seconds * 2**cand.read_failures)
        cand.due = time.monotonic() + max(delay, 0.5)
        if cand.read_failures == 3:
            self._log.warning(f"waiting for {_show(cand.rel)}: {why}", path=cand.rel)

    def _undecodable(self, cand: _Candidate, sig: tuple[int, int], reason: str) -> None:
        cand.stable_failures += 1
        if cand.stable_failures < BAD_AFTER_STABLE_CHECKS:
            # Maybe a writer that paused (a pre-allocated file being filled): look again.
            cand.due = time.monotonic() + max(self.config.intake.stability_seconds, 0.2)
            return
        self._reject(cand, sig, reason)

    def _reject(self, cand: _Candidate, sig: tuple[int, int], reason: str) -> None:
        self._candidates.pop(cand.rel, None)
        if self._bad.get(cand.rel) != sig:
            self._bad[cand.rel] = sig
            self._not_queued(cand.rel, reason)
        if cand.replaces:
            self._gone(cand.replaces, is_dir=False)

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

    # --- the full rescan --------------------------------------------------------------

    def _load_labels(self) -> None:
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

    def _sweep(self) -> None:
        """Walk both folders: take what is new or changed, retract what is gone."""
        self._load_labels()
        self._rescans += 1
        self._last_rescan = time.time()
        self._last_rescan_mono = time.monotonic()
        seen = self.queue.seen_files()
        known = self.queue.correction_paths()
        found: set[str] = set()
        available: dict[str, bool] = {}
        for top in TOPS:
            top_dir = self.workspace.root / top
            available[top] = top_dir.is_dir()
            if not available[top]:
                self._mark_unavailable(top)
                continue
            for path in self._walk(top_dir):
                rel = self._rel(str(path))
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
                self._consider(str(path))
        missing_labels = {
            f"corrections/{label}"
            for label in self._labels
            if available["corrections"] and not (self.workspace.corrections / label).is_dir()
        }
        for rel in missing_labels:
            self._mark_unavailable(rel)
        # What was unavailable and is back: say so, and re-watch it (the old watch died).
        with self._state_lock:
            back = {r for r in self._unavailable if (self.workspace.root / r).is_dir()}
            self._unavailable -= back
        for rel in sorted(back):
            self._log.info(f"source available again: {rel}", path=rel)
        if back and not self._stop.is_set():
            with self._observer_lock:
                self._stop_observer(2.0)
                self._start_observer()
        for rel in sorted((set(known) | set(seen)) - found):
            if rel in self._candidates or not self._watched(rel):
                continue
            if self._source_available(rel):
                self._gone(rel, is_dir=False)
