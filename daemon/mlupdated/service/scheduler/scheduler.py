"""When to update: the trigger rules, on APScheduler 3, on the monotonic clock.

Rule (DESIGN.md "The daemon"): at least ``min_batch`` pending corrections, then either
``quiet_seconds`` without a new drop or ``max_wait_seconds`` since the oldest pending
one. Besides: an optional cron schedule (at its times, update if anything is pending),
``update-now`` (update if anything is pending, whatever the rules, the pause or the
back-off say; the cron schedule does respect those two), ``pause``/``resume``, and a
doubling back-off after a failed or rejected run. One update at a time.

Time is measured with ``time.monotonic`` from drops this process saw, so a wall-clock
jump (a day back, years forward, a laptop waking up) neither stalls the queue nor
starts a storm: at most one catch-up run, coalesced. Only the cron schedule follows
the wall clock, because that is what a cron expression means. The clockwork (APScheduler)
is in ``ticker.py``, the batch's age and the back-off in ``pacing.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..sections import from_section
from ..update.runs import Outcome
from .pacing import Backoff, BatchAge
from .ticker import Ticker, parse_cron

CRON_REASON = "cron"


@dataclass(frozen=True)
class TriggerRules:
    """The part of ``config.update`` the scheduler reads."""

    min_batch: int = 10
    quiet_seconds: float = 30.0
    max_wait_seconds: float = 3600.0
    cron: str | None = None
    retry_backoff_seconds: float = 60.0
    max_backoff_seconds: float = 3600.0

    @classmethod
    def from_config(cls, update: Any) -> TriggerRules:
        """Take the fields of a ``config.update`` section."""
        return from_section(cls, update)


def due_reason(
    rules: TriggerRules,
    *,
    pending: int,
    since_last_drop: float | None,
    since_oldest: float | None,
) -> str | None:
    """Why an update is due by the batch rules now, or None when it is not.

    ``since_*`` are seconds on the monotonic clock; None means "no such drop seen".
    """
    if pending < rules.min_batch or pending <= 0:
        return None
    if since_last_drop is None or since_last_drop >= rules.quiet_seconds:
        return "quiet"
    if since_oldest is not None and since_oldest >= rules.max_wait_seconds:
        return "max_wait"
    return None


class UpdateScheduler:
    """Decides when to run ``run_update(reason) -> outcome`` and runs it, one at a time.

    ``pending_count()`` is asked on each tick (it must be cheap and thread-safe);
    ``run_update`` runs in the scheduler's worker thread and returns the run outcome
    (``promoted``, ``rejected``, ``failed``, ``abandoned`` or ``nothing``).
    """

    def __init__(
        self,
        rules: TriggerRules,
        *,
        pending_count: Callable[[], int],
        run_update: Callable[[str], Outcome | str],
        log: Any,
        paused: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rules = rules
        self._pending_count = pending_count
        self._run_update = run_update
        self._log = log
        self._clock = clock
        self._lock = threading.RLock()
        self._paused = paused
        self._forced: str | None = None
        self._running = False
        self._age = BatchAge()
        self._backoff = Backoff()
        self._last_pending = 0
        self._aps: Ticker | None = None
        self._cron_trigger = parse_cron(rules.cron) if rules.cron else None

    # --- inputs -------------------------------------------------------------------------

    def note_drop(self) -> None:
        """A correction was added or relabelled just now."""
        with self._lock:
            self._age.drop(self._clock())

    def prime(self, *, pending: int, oldest_age: float | None) -> None:
        """At start-up: corrections already pending, the oldest ``oldest_age`` s old
        (clamped: see ``BatchAge.prime``)."""
        with self._lock:
            if pending <= 0:
                return
            self._age.prime(self._clock(), oldest_age, max_wait=self._rules.max_wait_seconds)

    def request_update(self, *, reason: str = "update-now") -> None:
        """Run an update at the next tick if anything is pending (``update-now``)."""
        with self._lock:
            self._forced = reason

    def pause(self) -> None:
        """Stop starting scheduled updates (a running one finishes)."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Start scheduled updates again."""
        with self._lock:
            self._paused = False

    def reconfigure(self, rules: TriggerRules) -> None:
        """Apply new rules (SIGHUP); a bad cron raises ``ConfigError`` and changes nothing."""
        trigger = parse_cron(rules.cron) if rules.cron else None
        with self._lock:
            self._rules = rules
            self._cron_trigger = trigger
            if self._aps is not None:
                self._aps.schedule_cron(trigger)

    # --- state --------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while paused."""
        return self._paused

    @property
    def running(self) -> bool:
        """True while an update runs."""
        return self._running

    @property
    def rules(self) -> TriggerRules:
        """The rules in force."""
        return self._rules

    def next_trigger(self) -> dict[str, Any]:
        """What the scheduler waits for, and when it expects to start (for status)."""
        with self._lock:
            now = self._clock()
            pending = self._last_pending
            info: dict[str, Any] = {"pending": pending, "min_batch": self._rules.min_batch}
            if self._running:
                return {**info, "state": "running", "due_in_seconds": None}
            if self._forced:
                return {**info, "state": "requested", "due_in_seconds": 0.0}
            if self._paused:
                return {**info, "state": "paused", "due_in_seconds": None}
            if self._backoff.active(now):
                wait = self._backoff.remaining(now)
                return {**info, "state": "backing_off", "due_in_seconds": round(wait, 1)}
            info["cron_next"] = None if self._aps is None else self._aps.cron_next()
            if pending < self._rules.min_batch:
                return {**info, "state": "waiting_for_corrections", "due_in_seconds": None}
            candidates = []
            if self._age.last_drop is not None:
                candidates.append(self._age.last_drop + self._rules.quiet_seconds - now)
            if self._age.oldest is not None:
                candidates.append(self._age.oldest + self._rules.max_wait_seconds - now)
            due = max(min(candidates), 0.0) if candidates else 0.0
            return {**info, "state": "waiting_for_quiet", "due_in_seconds": round(due, 1)}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background scheduler (the tick and, if configured, the cron job)."""
        ticker = Ticker(self.tick, self._cron_fired, self._log)
        self._aps = ticker
        ticker.schedule_cron(self._cron_trigger)
        ticker.start()

    def shutdown(self) -> None:
        """Stop ticking; does not wait for a running update (the app decides that)."""
        if self._aps is not None:
            self._aps.shutdown()
            self._aps = None

    def _cron_fired(self) -> None:
        self.request_update(reason=CRON_REASON)

    # --- the decision ---------------------------------------------------------------------

    def tick(self) -> str | None:
        """Decide once; start an update when due. Returns the reason it started, or None."""
        try:
            pending = self._pending_count()
        except Exception as exc:  # a locked or broken database must not kill the timer
            self._log.warning("cannot count pending corrections", error=str(exc))
            return None
        with self._lock:
            self._last_pending = pending
            if pending <= 0 and not self._running:
                # Everything pending was retracted (or given up on after the gate's
                # last rejection): the next batch's age starts with its own first drop,
                # and it is a fresh batch, not a retry to back off from.
                self._age.oldest = None
                self._backoff.clear()
            if self._running:
                return None
            now = self._clock()
            reason: str | None = None
            backing_off = self._backoff.active(now)
            if self._forced == CRON_REASON and (self._paused or backing_off):
                # A schedule is not a person asking: pause and back-off hold for it.
                self._log.info("cron trigger skipped", paused=self._paused)
                self._forced = None
                return None
            if self._forced is not None:
                if pending > 0:
                    reason = self._forced
                else:
                    self._log.info("update requested, nothing pending", trigger=self._forced)
                self._forced = None
            elif self._paused:
                return None
            elif backing_off:
                return None
            else:
                last_drop, oldest = self._age.last_drop, self._age.oldest
                reason = due_reason(
                    self._rules,
                    pending=pending,
                    since_last_drop=None if last_drop is None else now - last_drop,
                    since_oldest=None if oldest is None else now - oldest,
                )
            if reason is None:
                return None
            self._running = True
            started = now
        aps = self._aps
        if aps is None:
            self._run(reason, started)  # not started: run inline (tests drive ticks)
        else:
            # A job of its own, so the tick keeps ticking (and status stays fresh)
            # while the update runs.
            try:
                aps.submit(self._run, (reason, started))
            except Exception:  # shutting down under our feet: nothing runs, nothing waits
                with self._lock:
                    self._running = False
                return None
        return reason

    def _run(self, reason: str, started: float) -> None:
        outcome = Outcome.FAILED
        try:
            outcome = self._run_update(reason)
        except Exception:
            self._log.exception("update job crashed in the daemon", trigger=reason)
        finally:
            with self._lock:
                self._running = False
                self._after_run(outcome, started)

    def _after_run(self, outcome: Outcome | str, started: float) -> None:
        now = self._clock()
        outcome = Outcome(outcome)
        if outcome.backs_off:
            seconds = self._backoff.extend(
                now,
                first=self._rules.retry_backoff_seconds,
                ceiling=self._rules.max_backoff_seconds,
            )
            self._log.info("next attempt after back-off", outcome=outcome.value, seconds=seconds)
            return
        if outcome is Outcome.PROMOTED:
            self._backoff.clear()
            # Whatever is still pending arrived during the run (or was held aside): its
            # age counts from the run's start at the latest.
            try:
                still = self._pending_count()
            except Exception:
                still = 0
            self._age.oldest = started if still > 0 else None
