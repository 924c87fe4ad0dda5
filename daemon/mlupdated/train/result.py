"""What an update task reports and returns: progress events and the result.

Shared by the network update (``task``) and the k-NN update (``knn``), so that neither
imports the other for its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..coreml.proto import Model_pb2
from ..errors import TrainingError
from .features import Skipped

TRAINING_BEGIN = "trainingBegin"
MINI_BATCH_END = "miniBatchEnd"
EPOCH_END = "epochEnd"


class UpdateCancelledError(TrainingError):
    """The caller asked the update to stop (``should_stop``) before it finished."""


@dataclass(frozen=True)
class UpdateEvent:
    """A progress event, like ``MLUpdateProgressHandlers`` reports."""

    event: str
    epoch_index: int | None = None
    mini_batch_index: int | None = None
    loss_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"event", "epochIndex", "miniBatchIndex", "lossValue"}``."""
        out: dict[str, Any] = {"event": self.event}
        if self.epoch_index is not None:
            out["epochIndex"] = self.epoch_index
        if self.mini_batch_index is not None:
            out["miniBatchIndex"] = self.mini_batch_index
        if self.loss_value is not None:
            out["lossValue"] = self.loss_value
        return out


@dataclass
class UpdateResult:
    """What an update produced: the new spec, and what went into it."""

    spec: Model_pb2.Model
    examples_used: int
    examples_skipped: list[Skipped]
    events: list[UpdateEvent] = field(default_factory=list)
    final_loss: float | None = None
    parameters_used: dict[str, Any] = field(default_factory=dict)
    # Examples of the model's rehearsal set trained beside the corrections (0: none).
    rehearsal_used: int = 0
