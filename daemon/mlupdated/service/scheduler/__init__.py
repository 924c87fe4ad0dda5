"""When an update runs.

``scheduler`` holds the rules (``TriggerRules`` and the pure ``due_reason``, the worked
example of this package) and ``UpdateScheduler``, which applies them; ``ticker`` is the
APScheduler plumbing that wakes it (the interval or cron trigger, ``parse_cron``) and
``pacing`` the bookkeeping it keeps between turns (the batch's age, the back-off after
a failed run).
"""

from __future__ import annotations

from .scheduler import TriggerRules, UpdateScheduler, due_reason
from .ticker import parse_cron

__all__ = ["TriggerRules", "UpdateScheduler", "due_reason", "parse_cron"]
