"""The scheduler's clockwork, on APScheduler 3: a tick, the cron job, the update job.

The tick and update jobs run on the monotonic clock through APScheduler's interval
trigger; only the cron job follows the wall clock, because that is what a cron
expression means. A tick or cron firing that is late (the machine slept) is folded into
the next one instead of being run late: coalescing keeps it to one run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from ...errors import ConfigError

TICK_SECONDS = 0.5
# A tick or cron firing that is late by more than this (the machine slept) is folded
# into the next one instead of being run late; coalescing keeps it to one run.
TICK_GRACE_SECONDS = 30
CRON_GRACE_SECONDS = 3600


def parse_cron(expression: str) -> CronTrigger:
    """A crontab expression (5 fields) as a trigger; ``ConfigError`` naming the key."""
    try:
        return CronTrigger.from_crontab(expression)
    except ValueError as exc:
        raise ConfigError(
            f"invalid cron expression {expression!r}: {exc}", key="update.cron"
        ) from exc


class Ticker:
    """A background scheduler that calls ``tick`` every ``TICK_SECONDS`` and
    ``cron_fired`` at the cron schedule's times, and runs each update as a job."""

    def __init__(
        self, tick: Callable[[], object], cron_fired: Callable[[], None], log: Any
    ) -> None:
        _quiet_apscheduler_logging(log)
        aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": TICK_GRACE_SECONDS,
            },
            timezone="UTC",
        )
        aps.add_job(tick, "interval", seconds=TICK_SECONDS, id="tick")
        self._aps = aps
        self._cron_fired = cron_fired

    def start(self) -> None:
        """Start ticking."""
        self._aps.start()

    def shutdown(self) -> None:
        """Stop ticking; does not wait for a running job."""
        self._aps.shutdown(wait=False)

    def schedule_cron(self, trigger: CronTrigger | None) -> None:
        """Replace the cron job (none when ``trigger`` is None)."""
        if self._aps.get_job("cron") is not None:
            self._aps.remove_job("cron")
        if trigger is not None:
            self._aps.add_job(
                self._cron_fired,
                trigger,
                id="cron",
                misfire_grace_time=CRON_GRACE_SECONDS,
            )

    def cron_next(self) -> str | None:
        """When the cron job fires next (ISO 8601), or None."""
        job = self._aps.get_job("cron")
        if job is None:
            return None
        return job.next_run_time.isoformat() if job.next_run_time else None

    def submit(self, run: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Run ``run(*args)`` now, as a job of its own (raises when shutting down)."""
        self._aps.add_job(run, args=args, id="update", misfire_grace_time=None)


class _ToStructlog(logging.Handler):
    """Carries APScheduler's stdlib log records into our structured log."""

    def __init__(self, log: Any) -> None:
        super().__init__(level=logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.warning("scheduler: " + record.getMessage())
        except Exception:
            self.handleError(record)


def _quiet_apscheduler_logging(log: Any) -> None:
    logger = logging.getLogger("apscheduler")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog(log))
