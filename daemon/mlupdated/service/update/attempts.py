"""Bounded retries: a batch the gate keeps rejecting is not retried forever.

After a rejected run, each correction the run trained on has one more rejection
against it (counted per revision: a relabelled or re-dropped correction starts again).
Those with ``max_attempts`` rejections end as ``rejected``, with the gate's reason, and
each is written to the workspace's error records so that ``status`` names its file.
Corrections that arrive later are a fresh batch with attempts of their own; a
correction given up on is tried again when its photo is dropped again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..queue.corrections import GATE_GAVE_UP

if TYPE_CHECKING:
    from ...logs import Logger
    from ..queue import Correction, Queue

ERROR_KIND = "rejected"


def give_up_rejected(
    queue: Queue,
    batch: Sequence[Correction],
    *,
    max_attempts: int,
    reason: str | None,
    log: Logger,
) -> list[int]:
    """Mark the corrections of ``batch`` rejected ``max_attempts`` times as ``rejected``;
    returns their ids."""
    counts = queue.gate_rejections(c.id for c in batch)
    spent = [c for c in batch if counts.get(c.id, 0) >= max_attempts]
    if not spent:
        return []
    why = f"{GATE_GAVE_UP} {max_attempts} times: {reason}"
    marked = queue.mark_rejected([c.id for c in spent], why)
    for correction in spent:
        queue.record_error(ERROR_KIND, correction.path, why)
    log.warning(
        "corrections rejected for good: the gate refused every model trained on them; "
        "new corrections start a fresh batch",
        corrections=marked,
        attempts=max_attempts,
        ids=[c.id for c in spent],
        reason=reason,
    )
    return [c.id for c in spent]
