"""Intake: find the photos users drop, wait until they are complete, queue them.

Events are hints, the rescan is the truth. A watchdog observer (inotify, or polling
for network shares) only hands paths to a ``queue.Queue``; one worker thread owns all
decisions: it waits until a file's size and mtime have not changed for
``stability_seconds`` (or its writer closed it, on Linux) *and* it decodes as an image,
hashes it, and then queues a correction (``corrections/<Label>/…``) or hands it to the
inbox (``inbox/…``). The decisions live in ``arrivals.py``, the watchdog plumbing in ``watch.py``.
A supervisor thread restarts a dead observer or worker, runs the periodic rescan,
and turns an inotify queue overflow into a rescan.

Nothing here modifies or deletes a user's file. A removed correction file is
retracted (if it was not trained yet); a file moved between label folders is
relabelled. If ``corrections/``, ``inbox/`` or a whole label folder disappears (a
network mount flapping), nothing is retracted: the source is marked unavailable
until it comes back.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import Config
from ..queue import CorrectionChange, Queue
from ..workspace import Workspace
from .arrivals import Arrivals
from .events import IntakeEvent, Rescan, Wake
from .sources import TOPS
from .watch import LIMIT_ERRNOS, OverflowWatch, observer_alive, resolved_roots, start_observer

SUPERVISE_SECONDS = 0.5
EVENT_BATCH = 5000


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
        self._log = log
        self._events: queue_mod.Queue[IntakeEvent] = queue_mod.Queue()
        self._stop = threading.Event()
        self._arrivals = Arrivals(
            workspace,
            config,
            queue,
            on_correction=on_correction,
            on_inbox=on_inbox,
            log=log,
            stopping=self._stop,
            post=self._events.put,
        )
        self._overflow = threading.Event()
        self._overflow_watch = OverflowWatch(self._overflow)
        self._observer: Any = None
        self._observer_kind = config.intake.observer
        self._fallback_reason: str | None = None
        self._worker: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._restarts = 0
        self._last_rescan: float | None = None
        self._last_rescan_mono = 0.0
        self._rescans = 0
        self._observer_lock = threading.RLock()
        self._watched_at: list[str] = []

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start watching; the first full rescan (the start-up sweep) runs at once."""
        self._stop.clear()
        self._arrivals.load_labels()
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
        self._events.put(Wake())
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        logging.getLogger("watchdog").removeHandler(self._overflow_watch)

    def update_config(self, config: Config) -> None:
        """Take a reloaded config (an observer kind change applies at the next restart)."""
        self.config = config
        self._arrivals.config = config

    def is_alive(self) -> bool:
        """True when the observer (and each of its watches) and the worker are running."""
        return self._observer_alive() and self._worker is not None and self._worker.is_alive()

    def status(self) -> dict[str, Any]:
        """What ``mlupdated status`` shows about intake."""
        unavailable = self._arrivals.unavailable()
        return {
            "observer": self._observer_kind,
            "alive": self.is_alive(),
            "restarts": self._restarts,
            "source_available": not unavailable,
            "unavailable": unavailable,
            "last_rescan": _iso(self._last_rescan),
            "rescans": self._rescans,
            "waiting": self._arrivals.stability.waiting(),
            "fallback_reason": self._fallback_reason,
        }

    def rescan(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """Ask for a full sweep; with ``wait``, return once the sweep itself has run."""
        done = threading.Event()
        self._last_rescan_mono = time.monotonic()
        self._events.put(Rescan(done))
        return done.wait(timeout) if wait else True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no event and no file is waiting (tests and shut-down use it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._events.unfinished_tasks == 0 and not self._arrivals.stability.waiting():
                return True
            time.sleep(0.05)
        return False

    # --- observer ---------------------------------------------------------------------

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
            if kind == "polling" or exc.errno not in LIMIT_ERRNOS:
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

    def _roots(self) -> list[Path]:
        return [self.workspace.root / top for top in TOPS]

    def _schedule_and_start(self, kind: str) -> Any:
        roots = self._roots()
        self._watched_at = resolved_roots(roots)
        return start_observer(
            kind, roots, self._events, polling_interval=self.config.intake.polling_interval
        )

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
        return observer_alive(self._observer)

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
                batch = [self._events.get(timeout=self._arrivals.stability.next_due_in())]
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
                self._arrivals.stability.check_due()
            except Exception as exc:
                self._log.exception("intake check failed", error=str(exc))

    def _handle(self, item: IntakeEvent) -> None:
        if isinstance(item, Rescan):
            try:
                self._sweep()
            finally:
                item.done.set()
        elif not isinstance(item, Wake):
            self._arrivals.handle(item)  # the events about paths, and readers' outcomes

    def _sweep(self) -> None:
        self._rescans += 1
        self._last_rescan = time.time()
        self._last_rescan_mono = time.monotonic()
        back = self._arrivals.sweep()
        moved = resolved_roots(self._roots()) != self._watched_at
        if (back or moved) and not self._stop.is_set():
            # A folder that vanished and came back is a new inode, and a re-pointed
            # symbolic link leads elsewhere: the old watch is dead.
            with self._observer_lock:
                self._stop_observer(2.0)
                self._start_observer()
