"""``mlupdated run``: the daemon's lifecycle, as a ladder.

Start-up: logging, the workspace (created on first run), the lock (a second daemon
exits 2 with "already running"), the store's crash recovery, the queue, interrupted
runs (abandoned, their corrections still pending, and redone at once), the inbox, the
intake (whose start-up sweep takes what arrived while we were down), the scheduler,
then READY to systemd.

Loop: wait on an event with a short timeout. Signal handlers only set flags and the
event: SIGTERM/SIGINT stop, SIGHUP reloads the config (a bad one is logged and the old
one kept), SIGUSR1 asks for an update now, SIGUSR2 re-reads the pause flag
(``requests.py``). Each turn also checks the intake's observer, pings systemd's watchdog
and publishes ``state/status.json`` (``health.py``).

Shut-down: STOPPING to systemd, then a ``contextlib.ExitStack`` unwinds: each part
pushed its own stop when it started, so a half-done start-up stops exactly what it
started. In reverse order: stop the intake and the scheduler; wait up to
``daemon.shutdown_timeout`` for a running update to finish, then stop its child (the
run is abandoned; the model on disk is untouched until a swap, and a swap is never
interrupted half-way because it is one ``os.replace``); stop the inbox; publish the
last status; close the queue; release the lock; exit 0. A part that fails to stop is
logged and the others still stop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...logs import get_logger
from ..config import load_config
from ..control import is_paused
from ..intake import InboxClassifier, Intake
from ..lock import WorkspaceLock
from ..notify import Notifier
from ..queue import Queue
from ..scheduler import TriggerRules, UpdateScheduler
from ..update import Outcome, UpdateRunner, close_interrupted_runs
from ..workspace import open_workspace
from .health import IntakeWatch, StatusWriter, StoreCheck, state_lost
from .requests import Requests, apply_pause_flag, reload_config
from .startup import configure_logs, open_store

if TYPE_CHECKING:
    from ..queue import CorrectionChange

LOOP_SECONDS = 1.0
STATUS_SECONDS = 2.0
# How often the store is checked for what people changed (store/guard.py).
STORE_CHECK_SECONDS = 2.0
# state/ removed or replaced under us: a failure, so that a service manager restarts us
# (and the restart re-creates state/ as a first start would); not 2, which it does not.
EXIT_STATE_LOST = 1
# Never make anything group- or world-writable, even when started under umask 000 (a
# stricter umask the user chose is kept).
UMASK_BITS = 0o022
# After the child was told to stop, the run's bookkeeping needs a moment to finish.
ABORT_GRACE_SECONDS = 10.0


class Daemon:
    """One daemon on one workspace."""

    def __init__(self, root: Path, *, model_path: Path) -> None:
        self.root = root
        self.model_path = model_path
        self.log = get_logger("daemon")
        self._requests = Requests()
        self._exit_code = 0
        self._next_store_check = 0.0
        self.notifier = Notifier.from_environ()

    # --- the ladder ------------------------------------------------------------------------

    def run(self) -> int:
        """Start up, loop until told to stop, shut down; returns the exit code."""
        # Signals that arrive during start-up are remembered, not fatal.
        self._requests.install()
        ws = open_workspace(self.root, create=True, model_path=self.model_path)
        self.ws = ws
        self.config = load_config(ws.config_path)
        configure_logs(self.config)
        self.log = get_logger("daemon", workspace=str(ws.root))
        self._status = StatusWriter(ws, self.log)
        self.lock = WorkspaceLock(Path(ws.lock_path), root=ws.root)
        self.lock.acquire()
        # Each part pushes its own stop as it starts, so a half-done start-up stops
        # exactly what it started, in reverse.
        with contextlib.ExitStack() as parts:
            parts.callback(self.lock.release)
            try:
                self._start_up(parts)
                self._loop()
            finally:
                self.notifier.stopping()
                self.log.info("stopping")
        self.log.info("stopped")
        return self._exit_code

    def _start_up(self, parts: contextlib.ExitStack) -> None:
        ws, log = self.ws, self.log
        log.info("starting", pid=os.getpid())
        self.store = open_store(ws, self.config, log)
        self.queue = Queue(ws.db_path)
        self.lock.guard(ws.db_path)
        parts.callback(self._stopped, "queue", self.queue.close)
        parts.callback(self._final_status)
        redo = close_interrupted_runs(self.queue, self.store, log=log)
        self.runner = UpdateRunner(
            workspace=ws,
            queue=self.queue,
            store=self.store,
            config=lambda: self.config,
            log=get_logger("update"),
        )
        self.inbox = InboxClassifier(
            workspace=ws,
            queue=self.queue,
            store=self.store,
            log=get_logger("inbox"),
            config=lambda: self.config,
        )
        self.inbox.start()
        parts.callback(self._stopped, "inbox", self.inbox.stop)
        self._check_store = StoreCheck(self.store, self.inbox, log)
        waited = self.inbox.resubmit_unclassified()
        if waited:
            log.info("inbox photos that waited for a usable model are classified now", count=waited)
        pending = self._make_scheduler(parts, redo=redo)
        self.intake = Intake(
            ws,
            self.config,
            self.queue,
            on_correction=self._on_correction,
            on_inbox=self.inbox.submit,
            log=get_logger("intake"),
        )
        self.intake.start()
        parts.callback(self._stopped, "intake", self.intake.stop)
        self._intake_watch = IntakeWatch(self.intake, log)
        self.scheduler.start()
        self.notifier.ready(status="watching")
        log.info(
            "ready",
            version=self.store.current_version(),
            pending=pending,
            paused=self.scheduler.paused,
            min_batch=self.config.update.min_batch,
        )

    def _make_scheduler(self, parts: contextlib.ExitStack, *, redo: bool) -> int:
        """The scheduler, primed with what is pending (returned); started later."""
        self.scheduler = UpdateScheduler(
            TriggerRules.from_config(self.config.update),
            pending_count=lambda: sum(self.queue.pending_counts().values()),
            run_update=self._run_update,
            log=get_logger("scheduler"),
            paused=is_paused(self.ws),
        )
        parts.callback(self._let_the_update_finish)
        parts.callback(self._stopped, "scheduler", self.scheduler.shutdown)
        pending = sum(self.queue.pending_counts().values())
        oldest = self.queue.oldest_pending_time()
        self.scheduler.prime(
            pending=pending, oldest_age=None if oldest is None else time.time() - oldest
        )
        if redo and pending and not self.scheduler.paused:
            self.log.info("redoing the interrupted update", pending=pending)
            self.scheduler.request_update(reason="redo interrupted run")
        return pending

    def _loop(self) -> None:
        interval = LOOP_SECONDS
        if self.notifier.watchdog_interval:
            interval = min(interval, self.notifier.watchdog_interval)
        next_status = 0.0
        requests = self._requests
        while not requests.stop:
            requests.wake.wait(interval)
            requests.wake.clear()
            if requests.stop:
                break
            try:
                self._turn()
            except Exception:  # one bad turn (a bug, a full disk) must not end the daemon
                self.log.exception("daemon loop error; carrying on")
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_SECONDS
                try:
                    self._publish_status()
                except Exception:
                    self.log.exception("status not published")

    def _turn(self) -> None:
        """One pass over the flags the signal handlers set, and the health checks."""
        requests = self._requests
        if state_lost(self.lock, self.ws, self.log):
            # A failure, so that a service manager restarts us (EXIT_STATE_LOST).
            self._exit_code, requests.stop = EXIT_STATE_LOST, True
            return
        if requests.reload:
            requests.reload = False
            self.config = reload_config(
                self.ws,
                self.config,
                scheduler=self.scheduler,
                notifier=self.notifier,
                log=self.log,
            )
        if requests.update_now:
            requests.update_now = False
            self.log.info("update requested")
            self.scheduler.request_update()
        if requests.pause_changed:
            requests.pause_changed = False
            apply_pause_flag(self.ws, self.scheduler, self.log)
        self._intake_watch.check()
        if time.monotonic() >= self._next_store_check:
            self._next_store_check = time.monotonic() + STORE_CHECK_SECONDS
            self._check_store()
        self.notifier.watchdog()

    def _stopped(self, name: str, stop: Callable[[], object]) -> None:
        """Stop one part; a part that fails to stop is logged and the others still stop."""
        try:
            stop()
        except Exception:
            self.log.exception(f"{name} did not stop cleanly")

    def _final_status(self) -> None:
        try:
            self._publish_status(running=False)
        except Exception:  # parts missing after a failed start-up: nothing to say
            pass

    def _let_the_update_finish(self) -> None:
        """Wait up to ``shutdown_timeout`` for a running update, then abandon it (the
        model on disk is untouched until its swap, which is one ``os.replace``)."""
        scheduler = self.scheduler
        if not scheduler.running:
            return
        timeout = self.config.daemon.shutdown_timeout
        self.log.info("waiting for the running update", timeout=timeout)
        if _wait_until(lambda: not scheduler.running, timeout):
            return
        self.log.warning("update still running at the shut-down timeout; abandoning it")
        self.runner.abort()
        _wait_until(lambda: not scheduler.running, ABORT_GRACE_SECONDS)

    # --- loop helpers ----------------------------------------------------------------------

    def _run_update(self, reason: str) -> Outcome:
        # A model placed by hand becomes the parent; an unreadable store waits (back-off).
        if not self._check_store():
            return Outcome.FAILED
        self.notifier.status(f"updating ({reason})")
        try:
            return self.runner.run(reason)
        finally:
            self.notifier.status("watching")

    def _on_correction(self, change: CorrectionChange) -> None:
        kind = getattr(change, "kind", change)
        if kind in ("new", "relabelled"):
            self.scheduler.note_drop()

    def _publish_status(self, *, running: bool = True) -> None:
        try:
            observer = self.intake.status()
        except Exception as exc:
            observer = {"error": str(exc)}
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "running": running,
            "next_trigger": self.scheduler.next_trigger(),
            "paused": self.scheduler.paused,
            "observer": observer,
        }
        self._status.publish(data)


def _wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
