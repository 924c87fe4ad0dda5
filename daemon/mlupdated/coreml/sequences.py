"""Multi-array inputs that Core ML also takes as a sequence.

A classic neural network (``arrayInputShapeMapping`` left at its rank-5 default) sees
every blob as ``[Seq, Batch, C, H, W]``. An input declared ``[C]`` or ``[C, H, W]`` is
one step of one example, but Core ML also accepts it with the first two axes given:
``[Seq, 1, C]`` or ``[Seq, 1, C, 1, 1]`` for ``[C]``, ``[Seq, 1, C, H, W]`` for
``[C, H, W]``; a recurrent layer then runs over the Seq steps (and the layers before
it apply to each step). Here such an array becomes ``[Seq, *declared]``, the one
example's value that the engine feeds as ``[N, Seq, *declared]``.

A pipeline takes a sequence where its input goes straight to such networks only: each
stage that reads it (before any stage makes a feature of that name) must be one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FeatureError, MlupdatedError
from .image_tensor import multiarray_shape
from .spec import NEURAL_NETWORK_KINDS, PIPELINE_KINDS, pipeline_stages

# NeuralNetwork.arrayInputShapeMapping: RANK5_ARRAY_MAPPING (the classic one) is 0.
RANK5_ARRAY_MAPPING = 0


def sequence_inputs(spec: Any) -> dict[str, tuple[int, ...]]:
    """The inputs of ``spec`` that may be fed as a sequence, with their declared shape:
    the ``[C]`` and ``[C, H, W]`` multi-array inputs of a rank-5-mapped network, and a
    pipeline's inputs that only such inputs of its stages read."""
    kind = spec.WhichOneof("Type")
    if kind in PIPELINE_KINDS:
        return _pipeline_sequence_inputs(spec)
    if kind not in NEURAL_NETWORK_KINDS:
        return {}
    if getattr(spec, kind).arrayInputShapeMapping != RANK5_ARRAY_MAPPING:
        return {}
    found: dict[str, tuple[int, ...]] = {}
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") != "multiArrayType":
            continue
        try:
            shape = multiarray_shape(feature)
        except MlupdatedError:
            continue  # no declared shape: any array fits, nothing to map
        if len(shape) in (1, 3):
            found[feature.name] = shape
    return found


def _pipeline_sequence_inputs(spec: Any) -> dict[str, tuple[int, ...]]:
    """A pipeline's inputs that every stage reading them takes as a sequence."""
    found: dict[str, tuple[int, ...]] = {}
    for name, readers in _pipeline_readers(spec).items():
        takes = [sequence_inputs(model) for model in readers]
        if takes and all(name in each for each in takes):
            found[name] = takes[0][name]
    return found


def _pipeline_readers(spec: Any) -> dict[str, list[Any]]:
    """Each input of a pipeline, with the stages that read it as the pipeline's input
    (before any stage makes a feature of that name)."""
    readers: dict[str, list[Any]] = {f.name: [] for f in spec.description.input}
    made: set[str] = set()
    for model in pipeline_stages(spec):
        for feature in model.description.input:
            if feature.name in readers and feature.name not in made:
                readers[feature.name].append(model)
        made.update(f.name for f in model.description.output)
    return readers


def network_inputs(spec: Any) -> set[str]:
    """The inputs of ``spec`` that go to neural networks only: all of a network's, and a
    pipeline's that only network stages read (an optional multi-array among them may be
    left out: the network stage feeds zeros, as Core ML does)."""
    kind = spec.WhichOneof("Type")
    if kind in NEURAL_NETWORK_KINDS:
        return {f.name for f in spec.description.input}
    return {
        name
        for name, readers in _pipeline_readers(spec).items()
        if readers and all(name in network_inputs(model) for model in readers)
    }


def sequence_forms(declared: tuple[int, ...]) -> str:
    """The shapes Core ML takes for a sequence of an input declared ``declared``."""
    if len(declared) == 1:
        (c,) = declared
        return f"[Seq, 1, {c}] or [Seq, 1, {c}, 1, 1]"
    c, h, w = declared
    return f"[Seq, 1, {c}, {h}, {w}]"


def as_sequence(name: str, declared: tuple[int, ...], array: np.ndarray) -> np.ndarray | None:
    """``array`` as ``[Seq, *declared]`` when it has one of Core ML's sequence forms
    (the declared shape itself when Seq is 1); None when it has no sequence form at
    all (rank other than 5, or 3 for a ``[C]`` input). A sequence form whose batch axis
    is not 1 or whose steps do not have the declared shape is refused in one line."""
    if array.ndim == 5 or (array.ndim == 3 and len(declared) == 1):
        seq, batch, *step = (int(d) for d in array.shape)
    else:
        return None
    want = list(declared) + [1] * (3 - len(declared)) if array.ndim == 5 else list(declared)
    if seq < 1:
        raise FeatureError(f"input '{name}' has shape {tuple(array.shape)}: a sequence of no steps")
    if batch != 1:
        raise FeatureError(
            f"input '{name}' has shape {tuple(array.shape)}: as a sequence its second axis "
            f"is the batch, which must be 1 (one example), got {batch}"
        )
    if step != want:
        raise FeatureError(
            f"input '{name}' has shape {tuple(array.shape)}: as a sequence each step must "
            f"have the declared shape {declared} ({sequence_forms(declared)}), "
            f"got steps of {tuple(step)}"
        )
    steps = array.reshape(seq, *declared)
    return steps[0] if seq == 1 else steps


__all__ = [
    "as_sequence",
    "network_inputs",
    "sequence_forms",
    "sequence_inputs",
]
