"""The corrections of one run, and what the run says about them afterwards.

``choose_batch`` decides which pending corrections train, which are held aside for the
gate, which trained ones are replayed and which are evaluated on; ``run_metrics`` is
the summary a finished run records beside its version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config
    from ..queue import Correction, Queue
    from .gate import Verdict


@dataclass(frozen=True)
class Batch:
    """The corrections of one run: trained on, held aside, replayed, evaluated on."""

    train: list[Correction]
    held: list[Correction]
    replayed: list[Correction]
    evaluation: list[Correction]

    @property
    def examples(self) -> list[Correction]:
        return self.train + self.replayed


def choose_batch(pending: list[Correction], config: Config, queue: Queue) -> Batch:
    """Which corrections train, which are held aside, replayed and evaluated on."""
    from . import gate as gate_module

    upd, rules = config.update, gate_module.GateRules.from_config(config.gate)
    seed = upd.seed if upd.seed is not None else int(time.time())
    train, held = gate_module.choose_holdout(pending, rules=rules, seed=seed)
    replayed = []
    if upd.policy == "replay":
        replayed = list(queue.trained_sample(upd.replay_sample, seed=seed))
    used = {c.id for c in train} | {c.id for c in replayed}
    earlier = [c for c in queue.all_trained() if c.id not in used]
    evaluation = list(held) + gate_module.sample_for_evaluation(earlier, seed=seed)
    return Batch(list(train), list(held), replayed, evaluation)


def run_metrics(result: dict[str, Any], batch: Batch, verdict: Verdict) -> dict[str, Any]:
    """What the run recorded: examples used and skipped, the batch's make-up, the gate."""
    return {
        "examples_used": result.get("examples_used"),
        "examples_skipped": result.get("examples_skipped"),
        "replayed": len(batch.replayed),
        "rehearsal": result.get("rehearsal_used", 0),
        "held_aside": sum(1 for c in batch.evaluation if c.state == "pending"),
        "parameters": result.get("parameters_used"),
        "gate": verdict.to_dict(),
    }
