"""The "neither" signal: how close a picture is to anything the model knows.

A model may have an output that scores how familiar an input is (the bundled model's
``familiarity``: the cosine between the photo's features and the nearest of the photos
its head was fitted on) and name, in its metadata, the score below which an input
looks like none of its classes::

    mlupdated.familiarity_threshold = "0.19"

The label stays what the classifier says (the model keeps its Cat/Dog contract); the
signal is reported beside it, so a picture of a rocket gets no confident label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..coreml.proto import Model_pb2

OUTPUT = "familiarity"
THRESHOLD_KEY = "mlupdated.familiarity_threshold"


@dataclass(frozen=True)
class Familiarity:
    """A prediction's familiarity score and the model's threshold."""

    score: float
    threshold: float

    @property
    def neither(self) -> bool:
        """Whether the input looks like none of the model's classes."""
        return self.score < self.threshold


def familiarity_threshold(spec: Model_pb2.Model) -> float | None:
    """The threshold the model names, when it has the familiarity output too."""
    text = spec.description.metadata.userDefined.get(THRESHOLD_KEY)
    if not text or OUTPUT not in {f.name for f in spec.description.output}:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def familiarity(outputs: Mapping[str, Any], threshold: float | None) -> Familiarity | None:
    """The signal for one prediction's outputs (None when the model gives none)."""
    if threshold is None or OUTPUT not in outputs:
        return None
    score = float(np.asarray(outputs[OUTPUT], dtype=np.float64).reshape(-1)[0])
    return Familiarity(score, threshold) if np.isfinite(score) else None
