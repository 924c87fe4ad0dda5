"""The gate between a trained candidate and ``current.mlmodel``.

Two checks, in this order:

1. Non-finite weights (NaN, inf) in any updatable layer: never promoted, whatever the
   metrics say (a failed run).
2. Not worse than the current model on corrections the run did not train on: the
   earlier trained corrections (a sample of them), plus, once the pending batch is big
   enough, a held-aside share of it (``holdout_fraction`` of the batch when that is at
   least ``min_holdout`` corrections). The held-aside ones stay pending and train in a
   later run. The decision is on accuracy: the candidate is rejected when its accuracy
   is below the current model's by more than ``tolerance``; mean cross-entropy is
   measured and recorded beside it. With nothing to evaluate on, the candidate passes
   and the manifest says so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ...coreml.rules import UPDATABLE_LAYER_TYPES
from ...coreml.spec import updatable_stage
from ...coreml.weights import decode_weights
from ..sections import from_section

if TYPE_CHECKING:
    from ...coreml.proto import Model_pb2
    from ..config import GateConfig

T = TypeVar("T")

# Evaluating on every correction ever made would make runs slower with age; a seeded
# sample of this size keeps the gate's cost flat.
MAX_EVAL_EXAMPLES = 200
# Probabilities are clipped before the log so one confident mistake is a large,
# finite loss rather than infinity.
MIN_PROBABILITY = 1e-12
WEIGHTED_LAYER_TYPES = UPDATABLE_LAYER_TYPES


@dataclass(frozen=True)
class GateRules:
    """The ``config.gate`` section."""

    enabled: bool = True
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    tolerance: float = 0.0

    @classmethod
    def from_config(cls, gate: GateConfig) -> GateRules:
        """Take the fields of a ``config.gate`` section."""
        return from_section(cls, gate)


@dataclass(frozen=True)
class Metrics:
    """How one model did on the evaluation examples."""

    count: int
    accuracy: float | None
    cross_entropy: float | None
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        """The inverse of :meth:`to_dict`."""
        return cls(
            **{k: data.get(k) for k in ("count", "accuracy", "cross_entropy")},
            failures=int(data.get("failures", 0)),
        )


@dataclass(frozen=True)
class Verdict:
    """The gate's decision and why."""

    passed: bool
    reason: str
    current: Metrics | None = None
    candidate: Metrics | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``gate`` entry of the manifest."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "current": self.current.to_dict() if self.current else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
        }


def nonfinite_layers(spec: Model_pb2.Model) -> list[str]:
    """Names of updatable layers whose weights or bias hold NaN or infinity."""
    stage = updatable_stage(spec)
    if stage is None:
        return []
    kind = stage.WhichOneof("Type")
    network = getattr(stage, kind, None) if kind else None
    layers = getattr(network, "layers", None)
    if layers is None:
        return []
    bad: list[str] = []
    for layer in layers:
        layer_type = layer.WhichOneof("layer")
        if not layer.isUpdatable or layer_type not in WEIGHTED_LAYER_TYPES:
            continue
        params = getattr(layer, layer_type)
        for field in ("weights", "bias"):
            if not params.HasField(field):
                continue
            values = decode_weights(getattr(params, field), count=None, layer=layer.name)
            if not np.all(np.isfinite(values)):
                bad.append(layer.name)
                break
    return bad


def choose_holdout(
    items: Sequence[T], *, rules: GateRules, seed: int
) -> tuple[list[T], list[T]]:
    """Split pending corrections into (train, held aside), reproducibly for ``seed``.

    Nothing is held aside when the gate is off or the share would be under
    ``min_holdout``; at least one correction is always left to train on.
    """
    items = list(items)
    count = int(math.floor(len(items) * rules.holdout_fraction))
    if not rules.enabled or count < max(rules.min_holdout, 1) or count >= len(items):
        return items, []
    # Sort first so that the split depends on content, not on database order.
    ordered = sorted(items, key=lambda c: getattr(c, "sha256", str(c)))
    chosen = set(random.Random(seed).sample(range(len(ordered)), count))
    train = [c for i, c in enumerate(ordered) if i not in chosen]
    held = [c for i, c in enumerate(ordered) if i in chosen]
    return train, held


def sample_for_evaluation(items: Sequence[T], *, seed: int) -> list[T]:
    """At most ``MAX_EVAL_EXAMPLES`` of ``items``, a seeded sample when there are more."""
    items = list(items)
    if len(items) <= MAX_EVAL_EXAMPLES:
        return items
    return random.Random(seed).sample(items, MAX_EVAL_EXAMPLES)


def evaluate(
    model_path: Path,
    examples: Sequence[tuple[str, str]],
    *,
    resize: str = "scaleFill",
    max_pixels: int | None = None,
) -> Metrics:
    """Accuracy and mean cross-entropy of the model at ``model_path`` on (path, label),
    each image decoded and fitted as intake and training do (``resize``, ``max_pixels``)."""
    if not examples:
        return Metrics(count=0, accuracy=None, cross_entropy=None)
    # The engine is heavy; only the child needs it.
    from ...engine.predictor import Predictor

    predictor = Predictor.from_path(model_path)
    results = predictor.predict_paths(
        [p for p, _ in examples], resize=resize, max_pixels=max_pixels
    )
    correct = 0
    losses: list[float] = []
    failures = 0
    for (_, label), result in zip(examples, results, strict=True):
        probabilities = getattr(result, "probabilities", None)
        if probabilities is None:
            failures += 1
            continue
        by_name = {str(k): float(v) for k, v in probabilities.items()}
        correct += int(str(result.label) == str(label))
        losses.append(-math.log(max(by_name.get(str(label), 0.0), MIN_PROBABILITY)))
    scored = len(losses)
    if scored == 0:
        return Metrics(count=0, accuracy=None, cross_entropy=None, failures=failures)
    return Metrics(
        count=scored,
        accuracy=correct / scored,
        cross_entropy=float(sum(losses) / scored),
        failures=failures,
    )


def judge(current: Metrics, candidate: Metrics, *, rules: GateRules) -> Verdict:
    """Compare the two models on the same examples."""
    if not rules.enabled:
        return Verdict(True, "gate disabled", current, candidate)
    if current.accuracy is None or candidate.accuracy is None:
        return Verdict(True, "no held-aside corrections to evaluate on yet", current, candidate)
    if candidate.accuracy < current.accuracy - rules.tolerance:
        return Verdict(
            False,
            f"candidate accuracy {candidate.accuracy:.3f} is below the current model's "
            f"{current.accuracy:.3f} on {candidate.count} held-aside corrections "
            f"(tolerance {rules.tolerance})",
            current,
            candidate,
        )
    return Verdict(
        True,
        f"accuracy {candidate.accuracy:.3f} vs {current.accuracy:.3f} "
        f"on {candidate.count} held-aside corrections",
        current,
        candidate,
    )
