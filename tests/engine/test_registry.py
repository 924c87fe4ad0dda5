"""The converter registry: one converter per layer type, duplicates refused at import,
and every activation-like layer coremltools emits resolved to the family that owns it."""

from __future__ import annotations

import pytest
from mlupdated.engine import registry
from mlupdated.engine.layers import activation, clip, unary
from mlupdated.engine.registry import converts, supported_layer_types

# Activation-like layer types (NeuralNetworkLayer oneof names) the coremltools
# neural-network backend writes, and the module whose converter must run each.
ACTIVATION_OWNERS = {
    "activation": activation,
    "gelu": activation,
    "clampedReLU": clip,
    "clip": clip,
    "tanh": unary,
    "erf": unary,
    "unary": unary,
}


def test_a_second_converter_for_a_layer_type_is_refused() -> None:
    before = dict(registry._CONVERTERS)
    for layer_type in ("tanh", "clampedReLU"):
        with pytest.raises(RuntimeError, match=f"two converters for layer type '{layer_type}'"):
            converts(layer_type)(lambda layer, ctx: [])
    assert registry._CONVERTERS == before


@pytest.mark.parametrize("layer_type", sorted(ACTIVATION_OWNERS))
def test_each_activation_layer_type_has_its_one_converter(layer_type: str) -> None:
    assert layer_type in supported_layer_types()
    func = registry._CONVERTERS[layer_type]
    assert func.__module__ == ACTIVATION_OWNERS[layer_type].__name__


def test_supported_layer_types_are_unique_and_sorted() -> None:
    types = supported_layer_types()
    assert list(types) == sorted(set(types))
