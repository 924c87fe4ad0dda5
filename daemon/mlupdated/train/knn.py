"""The update of a k-nearest-neighbours classifier: append examples to its index.

A ``kNearestNeighborsClassifier`` learns by remembering: each example's feature vector
goes into ``nearestNeighborsIndex.floatSamples`` and its label into the label list
(one label per sample, so a new class is just a new label). Alone, the model takes
feature vectors (examples are arrays); as the last stage of a pipeline whose first
stage is a frozen neural-network feature extractor, examples are images whose features
that stage computes, through the same feature cache as a network update.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..coreml.proto import Model_pb2
from ..coreml.spec import KNN_KIND, NEURAL_NETWORK_KINDS, PIPELINE_KINDS, pipeline_stages
from ..coreml.spec import serialize as serialize_spec
from ..coreml.validate import check_updatable
from ..errors import ParameterError, TrainingDataError, UnsupportedModelError
from .cache import FeatureCache
from .data import Example
from .features import Skipped, compute_features
from .result import UpdateEvent, UpdateResult
from .split import Split

TRAINING_BEGIN = "trainingBegin"
EPOCH_END = "epochEnd"


def _knn_stage(spec: Model_pb2.Model) -> tuple[Model_pb2.Model, Model_pb2.Model | None]:
    """(the kNN model inside ``spec``, the feature-extractor stage before it or None)."""
    if spec.WhichOneof("Type") == KNN_KIND:
        return spec, None
    stages = pipeline_stages(spec) if spec.WhichOneof("Type") in PIPELINE_KINDS else []
    if len(stages) != 2 or stages[0].WhichOneof("Type") not in NEURAL_NETWORK_KINDS:
        raise UnsupportedModelError(
            "a k-nearest-neighbours pipeline is updated only as "
            "[neural-network feature extractor, k-nearest-neighbours classifier]"
        )
    return stages[1], stages[0]


def _extractor_split(extractor: Model_pb2.Model, knn: Model_pb2.Model) -> Split:
    name = knn.description.input[0].name
    digest = hashlib.sha256(json.dumps({"knn-features": name}).encode())
    digest.update(serialize_spec(extractor))
    return Split((), (), (name,), extractor, digest.hexdigest())


def _array_features(
    examples: Sequence[Example], dims: int
) -> tuple[dict[str, np.ndarray], list[int], list[Skipped]]:
    used, skipped, rows = [], [], []
    for index, example in enumerate(examples):
        if not isinstance(example.source, np.ndarray):
            skipped.append(Skipped(example.describe(), "the model takes feature vectors"))
            continue
        vector = np.asarray(example.source, dtype=np.float32).reshape(-1)
        if vector.size != dims:
            skipped.append(
                Skipped(example.describe(), f"has {vector.size} values, the index takes {dims}")
            )
            continue
        used.append(index)
        rows.append(vector)
    return {"features": np.stack(rows) if rows else np.zeros((0, dims))}, used, skipped


def update_knn(
    spec: Model_pb2.Model,
    examples: Sequence[Example],
    *,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[Any], None] | None = None,
    cache: FeatureCache | None = None,
    resize: str = "scaleFill",
    path: str | os.PathLike[str] | None = None,
):
    """Append ``examples`` to the index of the kNN classifier in ``spec`` (see module)."""
    check_updatable(spec, path=path)
    given = [name for name, value in (overrides or {}).items() if value is not None]
    if given:
        raise ParameterError(
            f"{given[0]} does not apply to a k-nearest-neighbours model (it has no training "
            "parameters)",
            parameter=given[0],
        )
    new_spec = Model_pb2.Model()
    new_spec.CopyFrom(spec)
    knn, extractor = _knn_stage(new_spec)
    index = knn.kNearestNeighborsClassifier.nearestNeighborsIndex
    dims = int(index.numberOfDimensions)
    if extractor is None:
        features, used, skipped = _array_features(examples, dims)
        matrix = features["features"]
    else:
        split = _extractor_split(extractor, knn)
        features, used, skipped = compute_features(
            spec, split, examples, cache=cache, resize=resize
        )
        matrix = features[split.cut_blobs[0]].reshape(len(used), -1) if used else None
    if not used:
        raise TrainingDataError(f"no usable example ({len(skipped)} could not be read)", path=path)
    if matrix.shape[1] != dims:
        raise TrainingDataError(
            f"the feature extractor gives {matrix.shape[1]} values, the index takes {dims}",
            path=path,
        )
    events = [UpdateEvent(TRAINING_BEGIN)]
    if progress is not None:
        progress(events[0])
    _append(knn.kNearestNeighborsClassifier, matrix, [examples[i].label for i in used])
    events.append(UpdateEvent(EPOCH_END, 0))
    if progress is not None:
        progress(events[-1])
    return UpdateResult(
        spec=new_spec,
        examples_used=len(used),
        examples_skipped=skipped,
        events=events,
        final_loss=None,
        parameters_used={"optimizer": None},
    )


def _append(knn: Any, matrix: np.ndarray, labels: list[Any]) -> None:
    which = knn.WhichOneof("ClassLabels")
    ints = which == "int64ClassLabels"
    if which is None:
        ints = all(isinstance(label, int) for label in labels)
    target = knn.int64ClassLabels.vector if ints else knn.stringClassLabels.vector
    for vector, label in zip(matrix, labels, strict=True):
        if ints and not isinstance(label, int | np.integer):
            raise TrainingDataError(f"label '{label}' is not a whole number, and the model's are")
        knn.nearestNeighborsIndex.floatSamples.add().vector.extend(
            np.asarray(vector, dtype=np.float32).tolist()
        )
        target.append(int(label) if ints else str(label))
