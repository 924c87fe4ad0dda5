"""Specs for train tests that the shared builder does not make."""

from __future__ import annotations

import numpy as np
from helpers.updatable_specs import build_updatable_spec, layer_by_name
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import neural_network


def with_middle_conv(**options) -> Model_pb2.Model:
    """conv_1 (frozen) → relu_1 → conv_2 (updatable) → pool_1 …, built by hand."""
    spec = build_updatable_spec(conv_channels=2, **options)
    nn = neural_network(spec)
    conv = Model_pb2.Model().neuralNetwork.layers.add()
    conv.CopyFrom(layer_by_name(spec, "conv_1"))
    conv.name = "conv_2"
    conv.isUpdatable = True
    conv.convolution.kernelChannels = 2
    del conv.convolution.weights.floatValue[:]
    conv.convolution.weights.floatValue.extend(np.linspace(-1, 1, 2 * 2 * 9).tolist())
    conv.convolution.weights.isUpdatable = True
    conv.convolution.bias.isUpdatable = True
    del conv.input[:], conv.output[:]
    conv.input.append("relu_1_out")
    conv.output.append("conv_2_out")
    layers = list(nn.layers)
    del nn.layers[:]
    for layer in layers:
        nn.layers.add().CopyFrom(layer)
        if layer.name == "relu_1":
            nn.layers.add().CopyFrom(conv)
    pool = layer_by_name(spec, "pool_1")
    pool.input[0] = "conv_2_out"
    return spec
