"""Cut a neural network into a frozen prefix (run by the engine) and a trainable suffix.

A layer belongs to the suffix when it is updatable or reads, directly or through other
layers, a blob that an updatable layer made: its output changes during training. Every
other layer is frozen. The frozen layers the suffix needs (walking blob dependencies
back from what the suffix reads, so list order alone does not decide) form a
stand-alone prefix spec whose hash is stable across updates: it holds no trained
weight, so features computed once stay valid for every later version of the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..coreml.proto import Model_pb2
from ..coreml.spec import neural_network, serialize
from ..errors import NotUpdatableError

# Bump when the meaning of cached prefix outputs changes.
PREFIX_FORMAT = "1"


@dataclass(frozen=True)
class Split:
    """The two parts of a network.

    ``suffix`` holds indices into the network's layers (in order); ``cut_blobs`` are
    the blobs the suffix reads from the prefix or from the model's inputs (after
    preprocessing); ``prefix_spec`` computes exactly those; ``prefix_hash`` names it.
    """

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    cut_blobs: tuple[str, ...]
    prefix_spec: Model_pb2.Model
    prefix_hash: str


def is_updatable_layer(layer: object) -> bool:
    """Whether the layer is marked updatable."""
    return bool(layer.isUpdatable)  # type: ignore[attr-defined]


def split_network(spec: Model_pb2.Model) -> Split:
    """Split ``spec`` (a neural network) at its updatable layers; see the module docstring.

    Raises ``NotUpdatableError`` when no layer is updatable.
    """
    nn = neural_network(spec)
    layers = list(nn.layers)
    tainted_blobs: set[str] = set()
    suffix: list[int] = []
    for index, layer in enumerate(layers):
        if is_updatable_layer(layer) or any(b in tainted_blobs for b in layer.input):
            suffix.append(index)
            tainted_blobs.update(layer.output)
    if not suffix:
        raise NotUpdatableError("the network has no updatable layer", rule="updatable-layer")

    cut: list[str] = []
    for index in suffix:
        for blob in layers[index].input:
            if blob not in tainted_blobs and blob not in cut:
                cut.append(blob)

    producer = {blob: i for i, layer in enumerate(layers) for blob in layer.output}
    needed: set[int] = set()
    stack = [producer[b] for b in cut if b in producer]
    while stack:
        index = stack.pop()
        if index in needed:
            continue
        needed.add(index)
        stack.extend(producer[b] for b in layers[index].input if b in producer)
    prefix = tuple(sorted(needed))
    prefix_spec = _prefix_spec(spec, nn, [layers[i] for i in prefix])
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": PREFIX_FORMAT, "outputs": cut}).encode())
    digest.update(serialize(prefix_spec))
    return Split(prefix, tuple(suffix), tuple(cut), prefix_spec, digest.hexdigest())


def _prefix_spec(spec: Model_pb2.Model, nn: object, layers: list[object]) -> Model_pb2.Model:
    """A plain neural network with the model's inputs, preprocessing and ``layers``."""
    prefix = Model_pb2.Model()
    prefix.specificationVersion = spec.specificationVersion
    prefix.description.input.extend(spec.description.input)
    net = prefix.neuralNetwork
    net.arrayInputShapeMapping = nn.arrayInputShapeMapping  # type: ignore[attr-defined]
    net.imageInputShapeMapping = nn.imageInputShapeMapping  # type: ignore[attr-defined]
    net.preprocessing.extend(nn.preprocessing)  # type: ignore[attr-defined]
    net.layers.extend(layers)
    return prefix
