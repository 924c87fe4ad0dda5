"""One update run, parent side and child side.

``runner`` picks the corrections and runs the job (``UpdateRunner``); ``process``
starts the training child and enforces its timeout; ``worker_child`` is the child;
``gate`` judges the candidate against the current model; ``overrides`` maps the
config onto training parameters; ``recovery`` closes runs a kill left open; ``runs``
names how a run ends (``Outcome``, ``RunResult``); ``attempts`` ends a batch the gate
keeps rejecting; ``candidates`` reads the candidate file and clears leftovers;
``rollback`` rolls back and sends what the left versions learned back to pending.
"""

from __future__ import annotations

from .overrides import check_overrides, training_overrides
from .recovery import close_interrupted_runs
from .runner import UpdateRunner, remove_stale_candidates
from .runs import Outcome, RunResult

__all__ = [
    "Outcome",
    "RunResult",
    "UpdateRunner",
    "check_overrides",
    "close_interrupted_runs",
    "remove_stale_candidates",
    "training_overrides",
]
