"""``mlupdated run``: the daemon's lifecycle, as a ladder.

Start-up: logging, the workspace (created on first run), the lock (a second daemon
exits 2 with "already running"), the store's crash recovery, the queue, interrupted
runs (abandoned, their corrections still pending, and redone at once), the inbox, the
intake (whose start-up sweep takes what arrived while we were down), the scheduler,
then READY to systemd.

Loop: wait on an event with a short timeout. Signal handlers only set flags and the
event: SIGTERM/SIGINT stop, SIGHUP reloads the config (a bad one is logged and the old
one kept), SIGUSR1 asks for an update now, SIGUSR2 re-reads the pause flag. Each turn
also checks the intake's observer, pings systemd's watchdog and publishes
``state/status.json``.

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
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlupdatedError
from ..logs import configure_logging, get_logger
from .config import load_config
from .control import is_paused
from .intake import InboxClassifier, Intake
from .lock import WorkspaceLock
from .notify import Notifier
from .queue import Queue
from .scheduler import TriggerRules, UpdateScheduler
from .status import write_daemon_status
from .store import ModelStore
from .update import (
    Outcome,
    UpdateRunner,
    check_overrides,
    close_interrupted_runs,
    remove_stale_candidates,
)
from .workspace import open_workspace

if TYPE_CHECKING:
    from .config import Config
    from .queue import CorrectionChange

LOOP_SECONDS = 1.0
STATUS_SECONDS = 2.0
STATUS_REFRESH_SECONDS = 60.0
INTAKE_DEAD_TURNS = 5
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
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _configure(config: Config) -> None:
    fmt = config.daemon.log_format
    configure_logging(
        json=None if fmt == "auto" else fmt == "json",
        level=LOG_LEVELS.get(config.daemon.log_level, logging.INFO),
    )


class Daemon:
    """One daemon on one workspace."""

    def __init__(self, root: Path, *, model_path: Path) -> None:
        self.root = root
        self.model_path = model_path
        self.log = get_logger("daemon")
        self._wake = threading.Event()
        self._stop = False
        self._reload = False
        self._update_now = False
        self._pause_changed = False
        self._intake_dead = 0
        self._exit_code = 0
        self._last_status: dict[str, Any] | None = None
        self._last_status_time = 0.0
        self._next_store_check = 0.0
        self._store_error: str | None = None
        self.notifier = Notifier.from_environ()

    # --- signals: flags only ---------------------------------------------------------------

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stop = True
        self._wake.set()

    def _on_reload(self, signum: int, frame: Any) -> None:
        self._reload = True
        self._wake.set()

    def _on_update_now(self, signum: int, frame: Any) -> None:
        self._update_now = True
        self._wake.set()

    def _on_pause_changed(self, signum: int, frame: Any) -> None:
        self._pause_changed = True
        self._wake.set()

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_update_now)
        signal.signal(signal.SIGUSR2, self._on_pause_changed)

    # --- the ladder ------------------------------------------------------------------------

    def run(self) -> int:
        """Start up, loop until told to stop, shut down; returns the exit code."""
        # Signals that arrive during start-up are remembered, not fatal.
        self._install_signals()
        ws = open_workspace(self.root, create=True, model_path=self.model_path)
        self.ws = ws
        self.config = load_config(ws.config_path)
        _configure(self.config)
        self.log = get_logger("daemon", workspace=str(ws.root))
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
        self.store = ModelStore(ws)
        repaired = _loggable(self.store.recover())
        if repaired:
            log.info("model store repaired", **repaired)
        # Refused before anything starts (a value the model forbids would fail every
        # run), and only now: the check reads current.mlmodel, which recover() repairs.
        check_overrides(self.config, model_path=Path(ws.current_model))
        stale = remove_stale_candidates(Path(ws.state))
        if stale:
            log.info("removed leftovers of an interrupted run", files=[p.name for p in stale])
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
        while not self._stop:
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop:
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
        if self._state_lost():
            return
        if self._reload:
            self._reload = False
            self._reload_config()
        if self._update_now:
            self._update_now = False
            self.log.info("update requested")
            self.scheduler.request_update()
        if self._pause_changed:
            self._pause_changed = False
            self._apply_pause_flag()
        self._check_intake()
        if time.monotonic() >= self._next_store_check:
            self._next_store_check = time.monotonic() + STORE_CHECK_SECONDS
            self._check_store()
        self.notifier.watchdog()

    def _state_lost(self) -> bool:
        """Stop when state/ was removed or replaced: writes would go to files nobody
        reads. The workspace lock still keeps a second daemon out until we are gone."""
        lost = self.lock.lost()
        if lost is None:
            return False
        self.log.error(
            f"state/ was removed or replaced while running ({self.ws.relative(lost)} is "
            "not the file opened at start); stopping, a restart re-creates state/",
            path=self.ws.relative(lost),
        )
        self._exit_code, self._stop = EXIT_STATE_LOST, True
        return True

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

    def _check_store(self) -> bool:
        """Settle what people changed in the store; True when it is readable (then inbox
        photos that waited for it are classified)."""
        try:
            readable = self.store.check().readable
        except (MlupdatedError, OSError) as exc:  # a full disk, a folder made read-only
            if str(exc) != self._store_error:  # said once, not every few seconds
                self.log.error("model store not checked", error=str(exc))
            self._store_error = str(exc)
            return False
        self._store_error = None
        if readable:
            self.inbox.retry_held()
        return readable

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

    def _reload_config(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.ws.config_path)
            check_overrides(new, model_path=Path(self.ws.current_model))
            self.scheduler.reconfigure(TriggerRules.from_config(new.update))
        except MlupdatedError as exc:  # a bad config, or a model the check cannot read
            self.log.error("config not reloaded; keeping the old one", error=str(exc))
        else:
            if new.intake != self.config.intake or new.daemon != self.config.daemon:
                self.log.warning("intake and daemon settings take effect at the next restart")
            self.config = new
            message, level = "config reloaded", self.log.info
            if not Path(self.ws.config_path).exists():  # load_config's defaults, said aloud
                message += f": {self.ws.config_path} is missing; defaults applied"
                level = self.log.warning
            level(
                message,
                min_batch=new.update.min_batch,
                quiet_seconds=new.update.quiet_seconds,
                policy=new.update.policy,
            )
        self.notifier.ready()

    def _apply_pause_flag(self) -> None:
        if is_paused(self.ws):
            self.scheduler.pause()
            self.log.info("paused")
        else:
            self.scheduler.resume()
            self.log.info("resumed")

    def _check_intake(self) -> None:
        try:
            alive = self.intake.is_alive()
        except Exception:
            alive = False
        # The intake restarts its own observer; step in only when it stays dead.
        self._intake_dead = 0 if alive else self._intake_dead + 1
        if self._intake_dead < INTAKE_DEAD_TURNS:
            return
        self._intake_dead = 0
        self.log.warning("file watcher found dead; restarting it")
        try:
            self.intake.stop()
        except Exception:
            pass
        try:
            self.intake.start()
        except MlupdatedError as exc:
            self.log.error("file watcher did not restart", error=str(exc))

    def _publish_status(self, *, running: bool = True) -> None:
        try:
            observer = self.intake.status()
        except Exception as exc:
            observer = {"error": str(exc)}
        data = {
            "pid": os.getpid(),
            "running": running,
            "next_trigger": self.scheduler.next_trigger(),
            "paused": self.scheduler.paused,
            "observer": observer,
        }
        # Every write is an fsync: skip unchanged states, but refresh now and then so
        # a reader can tell a live daemon from a stale file.
        now = time.monotonic()
        if data == self._last_status and now - self._last_status_time < STATUS_REFRESH_SECONDS:
            return
        try:
            write_daemon_status(self.ws, data)
        except MlupdatedError as exc:
            self.log.warning("status not written", error=str(exc))
            return
        self._last_status, self._last_status_time = data, now


def _wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _loggable(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v}
    return {"result": str(data)}
