"""The update task: what Core ML's ``MLUpdateTask`` does, on NumPy.

Validate the model before any work, resolve the training parameters (defaults from the
spec, overrides checked against its allowed values), compute the frozen prefix's
features once (through the feature cache), then train the updatable layers for the
given epochs over mini-batches: mean loss over each mini-batch, the last partial one
kept, examples in the given order or in a seeded permutation per epoch. Progress is
reported as ``trainingBegin`` / ``miniBatchEnd`` / ``epochEnd`` events. The result is
the input spec with only the updatable weights replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..coreml.params import update_parameters
from ..coreml.proto import Model_pb2
from ..coreml.spec import KNN_KIND, PIPELINE_KINDS, pipeline_stages
from ..coreml.validate import check_updatable
from ..errors import DivergedError, TrainingDataError
from .cache import FeatureCache
from .data import Example
from .features import compute_features
from .network import SuffixNetwork, encode_targets
from .optim import make_optimizer
from .rehearsal import Rehearsal, rehearsal_set
from .result import (
    EPOCH_END,
    MINI_BATCH_END,
    TRAINING_BEGIN,
    UpdateCancelledError,
    UpdateEvent,
    UpdateResult,
)
from .split import split_network

__all__ = [
    "EPOCH_END",
    "MINI_BATCH_END",
    "TRAINING_BEGIN",
    "UpdateCancelledError",
    "UpdateEvent",
    "UpdateResult",
    "epoch_order",
    "epoch_permutation",
    "run_update",
    "training_rows",
]


def epoch_permutation(count: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order of ``count`` examples in epoch ``epoch`` when shuffling is on.

    Depends only on (seed, epoch, count), so an update is reproducible and a reference
    implementation can use the very same order.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(count)


def epoch_order(count: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Indices of the examples in the order epoch ``epoch`` takes them."""
    if shuffle:
        return epoch_permutation(count, seed=seed, epoch=epoch)
    return np.arange(count)


def _is_knn(spec: Model_pb2.Model) -> bool:
    kind = spec.WhichOneof("Type")
    if kind == KNN_KIND:
        return True
    stages = pipeline_stages(spec) if kind in PIPELINE_KINDS else []
    return bool(stages) and stages[-1].WhichOneof("Type") == KNN_KIND


def run_update(
    spec: Model_pb2.Model,
    examples: Sequence[Example],
    *,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[UpdateEvent], None] | None = None,
    cache: FeatureCache | None = None,
    resize: str = "scaleFill",
    should_stop: Callable[[], bool] | None = None,
    path: str | os.PathLike[str] | None = None,
    rehearse: bool = True,
) -> UpdateResult:
    """Run the update task on ``spec`` with ``examples``; the input spec is not modified.

    When the model carries a rehearsal set (see ``rehearsal.py``) and ``rehearse`` is
    true, the update trains on that set plus each example repeated the set's
    ``correction_weight`` times; ``examples_used`` still counts the given examples.

    Raises ``NotUpdatableError`` (with the rule) before any work for a model Core ML
    would refuse, ``ParameterError`` for an override outside the model's allowed
    values, ``TrainingDataError`` when no example is usable or a label is unknown,
    ``DivergedError`` on a non-finite loss or weight, ``UpdateCancelledError`` when
    ``should_stop()`` turns true (checked between mini-batches).
    """
    if _is_knn(spec):
        from .knn import update_knn

        return update_knn(
            spec,
            examples,
            overrides=overrides,
            progress=progress,
            cache=cache,
            resize=resize,
            path=path,
        )
    check_updatable(spec, path=path)
    params = update_parameters(spec)
    values = params.resolve(overrides)
    split = split_network(spec)
    network = SuffixNetwork(spec, split)
    rehearsal = rehearsal_set(spec, split) if rehearse else None
    given = len(rehearsal.examples) if rehearsal is not None else 0
    pool = [*rehearsal.examples, *examples] if rehearsal is not None else list(examples)
    _check_labels(network, pool)

    features, used, skipped = compute_features(spec, split, pool, cache=cache, resize=resize)
    corrections = sum(1 for i in used if i >= given)
    if not corrections:
        raise TrainingDataError(f"no usable example ({len(skipped)} could not be read)", path=path)
    rows = _weighted_rows(used, given, rehearsal)
    features = {name: stacked[rows] for name, stacked in features.items()}
    targets = encode_targets(network, [pool[used[r]].label for r in rows])

    optimizer = make_optimizer(params.optimizer or "", network.params, values)
    events: list[UpdateEvent] = []

    def emit(event: UpdateEvent) -> None:
        events.append(event)
        if progress is not None:
            progress(event)

    emit(UpdateEvent(TRAINING_BEGIN))
    count = len(rows)
    batch_size = int(values["mini_batch_size"])
    final_loss: float | None = None
    for epoch in range(int(values["epochs"])):
        order = epoch_order(
            count, shuffle=bool(values["shuffle"]), seed=int(values["seed"]), epoch=epoch
        )
        total = 0.0
        for batch_index, start in enumerate(range(0, count, batch_size)):
            if should_stop is not None and should_stop():
                raise UpdateCancelledError("the update was stopped before it finished")
            index = order[start : start + batch_size]
            loss = _train_step(network, optimizer, features, targets, index)
            total += loss * len(index)
            emit(UpdateEvent(MINI_BATCH_END, epoch, batch_index, loss))
        # The epoch's loss is the mean per-example loss over the epoch.
        final_loss = total / count
        emit(UpdateEvent(EPOCH_END, epoch, None, final_loss))

    new_spec = Model_pb2.Model()
    new_spec.CopyFrom(spec)
    network.write_weights(new_spec)
    return UpdateResult(
        spec=new_spec,
        examples_used=corrections,
        examples_skipped=skipped,
        events=events,
        final_loss=final_loss,
        parameters_used={"optimizer": params.optimizer, **values},
        rehearsal_used=sum(1 for i in used if i < given),
    )


def _weighted_rows(used: list[int], given: int, rehearsal: Rehearsal | None) -> np.ndarray:
    """Rows of the stacked features an epoch goes over: each rehearsal example once,
    each correction ``correction_weight`` times (once without a rehearsal set)."""
    weight = rehearsal.correction_weight if rehearsal is not None else 1
    repeats = [1 if i < given else weight for i in used]
    return np.repeat(np.arange(len(used)), repeats)


def training_rows(spec: Model_pb2.Model, examples: int, *, rehearse: bool = True) -> int:
    """How many rows an epoch of an update of ``examples`` examples goes over (for a
    progress bar), rehearsal set and repetitions included."""
    rehearsal = rehearsal_set(spec, split_network(spec)) if rehearse else None
    if rehearsal is None:
        return examples
    return len(rehearsal.examples) + examples * rehearsal.correction_weight


def _check_labels(network: SuffixNetwork, examples: Sequence[Example]) -> None:
    if network.loss_kind != "crossEntropy":
        return
    known = set(network.labels)
    for example in examples:
        if example.label not in known:
            listed = ", ".join(str(label) for label in network.labels)
            raise TrainingDataError(
                f"{example.describe()}: label '{example.label}' is not one of the model's "
                f"labels ({listed})"
            )


def _train_step(
    network: SuffixNetwork,
    optimizer: Any,
    features: dict[str, np.ndarray],
    targets: np.ndarray,
    index: np.ndarray,
) -> float:
    batch = {name: values[index] for name, values in features.items()}
    optimizer.zero_grad()
    # Overflow is detected below and reported as divergence, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        loss = network.loss(batch, targets[index])
        value = float(loss.data)
        if not np.isfinite(value):
            raise DivergedError(f"the loss became {value}; try a smaller learning rate")
        loss.backward()
        optimizer.step()
    for param in network.params:
        if not np.all(np.isfinite(param.data)):
            raise DivergedError(
                f"weights of '{param.name}' became non-finite; try a smaller learning rate"
            )
    return value
