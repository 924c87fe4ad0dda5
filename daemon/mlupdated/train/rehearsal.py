"""The rehearsal set a model may carry: general examples an update trains on beside the
user's corrections, so that the model learns the corrected animal without forgetting
the others.

A model carries one when its metadata names it::

    mlupdated.rehearsal = {"layer": "familiar", "labels": ["Cat", ..., "Dog"],
                           "correction_weight": 10}

``layer`` is a frozen innerProduct whose weight rows are the examples, as values of
the blob that layer reads; that blob must be one the trainable suffix reads (a cut
blob), so a rehearsal example skips the frozen prefix entirely. ``labels`` gives each
row's label. ``correction_weight`` is how many times each correction is repeated in
the update's examples, so that ten corrections weigh against the rehearsal set.

Core ML on a device ignores the key: there the update trains on what the app passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..coreml.proto import Model_pb2
from ..coreml.spec import neural_network
from ..coreml.weights import decode_layer_weights
from ..errors import UnsupportedModelError
from .data import CutValues, Example
from .split import Split

METADATA_KEY = "mlupdated.rehearsal"
MAX_CORRECTION_WEIGHT = 1000


@dataclass(frozen=True)
class Rehearsal:
    """A model's rehearsal set: the examples and the weight of each correction."""

    examples: tuple[Example, ...]
    correction_weight: int


def rehearsal_set(spec: Model_pb2.Model, split: Split) -> Rehearsal | None:
    """The rehearsal set ``spec`` carries, or None; ``UnsupportedModelError`` (one line)
    when its metadata is malformed or does not match the network."""
    text = spec.description.metadata.userDefined.get(METADATA_KEY)
    if not text:
        return None
    try:
        entry = json.loads(text)
        layer_name, labels = str(entry["layer"]), list(entry["labels"])
        weight = int(entry.get("correction_weight", 1))
    except (ValueError, TypeError, KeyError) as exc:
        raise UnsupportedModelError(f"{METADATA_KEY} is not valid: {exc}") from None
    if not 1 <= weight <= MAX_CORRECTION_WEIGHT:
        raise UnsupportedModelError(
            f"{METADATA_KEY}: correction_weight {weight} is outside 1..{MAX_CORRECTION_WEIGHT}"
        )
    layer = _layer(spec, layer_name)
    (blob,) = layer.input
    if blob not in split.cut_blobs:
        raise UnsupportedModelError(
            f"{METADATA_KEY}: layer '{layer_name}' reads '{blob}', which the updatable "
            f"layers do not read"
        )
    params = layer.innerProduct
    if len(labels) != params.outputChannels:
        raise UnsupportedModelError(
            f"{METADATA_KEY}: {len(labels)} labels for {params.outputChannels} rows of "
            f"'{layer_name}'"
        )
    rows = decode_layer_weights(layer).reshape(params.outputChannels, params.inputChannels)
    examples = tuple(
        Example(CutValues({blob: row.astype(np.float32)}), label)
        for row, label in zip(rows, labels, strict=True)
    )
    return Rehearsal(examples, weight)


def _layer(spec: Model_pb2.Model, name: str) -> Model_pb2.NeuralNetworkLayer:
    for layer in neural_network(spec).layers:
        if layer.name == name:
            if layer.WhichOneof("layer") != "innerProduct" or layer.isUpdatable:
                raise UnsupportedModelError(
                    f"{METADATA_KEY}: layer '{name}' must be a frozen innerProduct"
                )
            return layer
    raise UnsupportedModelError(f"{METADATA_KEY}: no layer named '{name}'")
