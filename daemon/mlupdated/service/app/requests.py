"""What people ask the running daemon for, by signal, and how the daemon answers.

Signal handlers only set flags and wake the loop: SIGTERM/SIGINT stop, SIGHUP reloads
the config (a bad one is logged and the old one kept), SIGUSR1 asks for an update now,
SIGUSR2 re-reads the pause flag. The loop (``daemon.py``) reads the flags on its next turn
and calls ``reload_config`` or ``apply_pause_flag`` here.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import MlupdatedError
from ..config import load_config
from ..control import is_paused
from ..scheduler import TriggerRules
from ..update import check_overrides

if TYPE_CHECKING:
    from ..config import Config
    from ..notify import Notifier
    from ..scheduler import UpdateScheduler
    from ..workspace import Workspace


class Requests:
    """The flags the signal handlers set, and the event that wakes the loop."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.stop = False
        self.reload = False
        self.update_now = False
        self.pause_changed = False

    # --- signals: flags only ---------------------------------------------------------------

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop = True
        self.wake.set()

    def _on_reload(self, signum: int, frame: Any) -> None:
        self.reload = True
        self.wake.set()

    def _on_update_now(self, signum: int, frame: Any) -> None:
        self.update_now = True
        self.wake.set()

    def _on_pause_changed(self, signum: int, frame: Any) -> None:
        self.pause_changed = True
        self.wake.set()

    def install(self) -> None:
        """Point the daemon's signals at these flags."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_update_now)
        signal.signal(signal.SIGUSR2, self._on_pause_changed)


def reload_config(
    ws: Workspace,
    config: Config,
    *,
    scheduler: UpdateScheduler,
    notifier: Notifier,
    log: Any,
) -> Config:
    """SIGHUP: the config re-read and applied, or ``config`` kept when the new one is bad."""
    notifier.reloading()
    try:
        new = load_config(ws.config_path)
        check_overrides(new, model_path=Path(ws.current_model))
        scheduler.reconfigure(TriggerRules.from_config(new.update))
    except MlupdatedError as exc:  # a bad config, or a model the check cannot read
        log.error("config not reloaded; keeping the old one", error=str(exc))
        new = config
    else:
        if new.intake != config.intake or new.daemon != config.daemon:
            log.warning("intake and daemon settings take effect at the next restart")
        message, level = "config reloaded", log.info
        if not Path(ws.config_path).exists():  # load_config's defaults, said aloud
            message += f": {ws.config_path} is missing; defaults applied"
            level = log.warning
        level(
            message,
            min_batch=new.update.min_batch,
            quiet_seconds=new.update.quiet_seconds,
            policy=new.update.policy,
        )
    notifier.ready()
    return new


def apply_pause_flag(ws: Workspace, scheduler: UpdateScheduler, log: Any) -> None:
    """SIGUSR2: pause or resume as the flag file says."""
    if is_paused(ws):
        scheduler.pause()
        log.info("paused")
    else:
        scheduler.resume()
        log.info("resumed")
