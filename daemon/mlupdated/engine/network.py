"""What a neural network spec says about its compiled graph (which blobs it returns,
which opset it targets), without importing ONNX: a ``predict`` that finds its graph in
the cache never needs the ``onnx`` package, whose import costs a noticeable part of a
second."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidModelError, UnsupportedModelError
from .dataflow import exposed_reads, writes

OPSET = 17
NEURAL_NETWORK_KINDS = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")


def network_of(spec: Any) -> Any:
    """The NeuralNetwork(Classifier/Regressor) message of a spec, or UnsupportedModelError."""
    kind = spec.WhichOneof("Type")
    if kind not in NEURAL_NETWORK_KINDS:
        raise UnsupportedModelError(f"model type {kind!r} is not a neural network")
    return getattr(spec, kind)


def probabilities_blob(spec: Any) -> str | None:
    """For a classifier, the blob holding the class probabilities (else None)."""
    if spec.WhichOneof("Type") != "neuralNetworkClassifier":
        return None
    nn = spec.neuralNetworkClassifier
    if nn.labelProbabilityLayerName:
        return nn.labelProbabilityLayerName
    if not nn.layers:
        raise InvalidModelError("classifier has no layers")
    return nn.layers[-1].output[0]


def default_outputs(spec: Any, *, stop_before: int | None = None) -> list[str]:
    """The blobs a compiled graph returns when no ``outputs`` are asked for.

    The whole network: the model's output features that layers produce (for a
    classifier, the probabilities blob first). A prefix (``stop_before``): the blobs made
    by the prefix that later layers read, in order of first use.
    """
    nn = network_of(spec)
    layers = list(nn.layers)
    if stop_before is not None and stop_before < len(layers):
        made = set(writes(layers[:stop_before]))
        frontier: list[str] = []
        for layer in layers[stop_before:]:
            # A control layer's sub-networks read blobs by name too.
            nested = sorted(exposed_reads([layer]).difference(layer.input))
            for blob in [*layer.input, *nested]:
                if blob in made and blob not in frontier:
                    frontier.append(blob)
        return frontier
    made = set(writes(layers))  # control layers' sub-networks write blobs too
    prob = probabilities_blob(spec)
    wanted = [out.name for out in spec.description.output if out.name in made and out.name != prob]
    if prob is not None:
        # The probabilities first; a classifier's other outputs (a familiarity score,
        # say) come along.
        return [prob, *wanted]
    if not wanted:
        raise InvalidModelError("no layer produces any of the model's outputs")
    return wanted
