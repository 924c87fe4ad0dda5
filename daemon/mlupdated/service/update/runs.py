"""How an update run ended: the ``Outcome`` and the ``RunResult`` a run hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """The end of an update run, as stored in the ``runs`` table and shown by status.

    A ``str`` so that it is stored, logged and compared as its text.
    """

    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"
    ABANDONED = "abandoned"
    # No run at all: nothing was pending. Never stored.
    NOTHING = "nothing"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def backs_off(self) -> bool:
        """True when the scheduler waits (with back-off) before trying again."""
        return self in (Outcome.FAILED, Outcome.REJECTED)


# The outcomes a finished run may have in the ``runs`` table.
RUN_OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.NOTHING)


@dataclass(frozen=True)
class RunResult:
    """What one update run produced: its outcome, the version it made (if any), the
    final training loss, the metrics kept with the run, and the reason in words."""

    outcome: Outcome
    version: int | None = None
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
