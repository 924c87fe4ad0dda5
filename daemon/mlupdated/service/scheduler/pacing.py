"""The scheduler's bookkeeping on the monotonic clock: how old the pending batch is
(``BatchAge``), and the doubling back-off after a failed or rejected run (``Backoff``)."""

from __future__ import annotations


class BatchAge:
    """When the pending batch's oldest and latest drops came."""

    def __init__(self) -> None:
        self.last_drop: float | None = None
        self.oldest: float | None = None

    def drop(self, now: float) -> None:
        """A correction was added or relabelled at ``now``."""
        self.last_drop = now
        if self.oldest is None:
            self.oldest = now

    def prime(self, now: float, oldest_age: float | None, *, max_wait: float) -> None:
        """At start-up: the oldest pending correction is ``oldest_age`` s old.

        The wall-clock age is clamped to ``[0, max_wait]``: a clock moved back cannot make
        it negative, a clock moved forward can cause one catch-up run, not several.
        """
        age = min(max(oldest_age or 0.0, 0.0), max_wait)
        self.oldest = now - age
        # Quiet is counted from start-up: files found by the start-up sweep are
        # drops too, and a user may still be copying.
        self.last_drop = now


class Backoff:
    """After a failed or rejected run, wait before the next attempt, twice as long each
    time up to a ceiling: how long it is, and until when it holds."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.until: float | None = None

    def active(self, now: float) -> bool:
        """True while the back-off holds at ``now``."""
        return self.until is not None and now < self.until

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (0 when it does not hold)."""
        return self.until - now if self.until is not None and now < self.until else 0.0

    def clear(self) -> None:
        """A fresh start: the next failure backs off by the first step again."""
        self.seconds = 0.0
        self.until = None

    def extend(self, now: float, *, first: float, ceiling: float) -> float:
        """After a failure at ``now``: ``first`` seconds, else double, up to ``ceiling``."""
        if self.seconds <= 0:
            self.seconds = first
        else:
            self.seconds = min(self.seconds * 2, ceiling)
        self.until = now + self.seconds
        return self.seconds
