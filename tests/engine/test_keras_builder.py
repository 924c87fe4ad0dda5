"""Keras-Sequential-style CNN classifiers written with NeuralNetworkBuilder (the form
Keras converters produce: image input with a scaler, same/valid convolutions,
activations, pooling, channel-last flatten, dense layers, softmax, string labels),
run end to end by the engine and compared with PyTorch modules carrying the same
weights."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlupdated.coreml import proto  # noqa: F401  (quiets coremltools before its import)
from mlupdated.engine.predictor import Predictor

from .helpers import assert_close, rng

logging.getLogger("coremltools").setLevel(logging.ERROR)

LABELS = ["cat", "dog", "bird", "fish"]
BATCH = 3


@dataclass
class Case:
    """A spec builder and its PyTorch twin (both from the same weights)."""

    channels: int
    size: int
    is_bgr: bool
    scale: float
    bias: tuple[float, ...]
    layers: Callable[[Any, dict[str, np.ndarray]], str]
    torch_forward: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]
    weights: Callable[[np.random.Generator], dict[str, np.ndarray]]


def _w(g: np.random.Generator, *shape: int, fan_in: int) -> np.ndarray:
    return (g.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _conv(builder, name, w, b, inp, out, *, stride=1, mode="same"):
    # Keras kernels are [kh, kw, in, out]: the builder's layout.
    kh, kw, cin, cout = w.shape
    builder.add_convolution(
        name,
        kernel_channels=cin,
        output_channels=cout,
        height=kh,
        width=kw,
        stride_height=stride,
        stride_width=stride,
        border_mode=mode,
        groups=1,
        W=w,
        b=b,
        has_bias=True,
        input_name=inp,
        output_name=out,
    )


def _torch_conv(x, w, b, *, stride=1, same=True):
    weight = w.permute(3, 2, 0, 1)  # [out, in, kh, kw]
    if same:
        # TensorFlow's "same": the extra padding goes to the bottom/right.
        kh, kw = weight.shape[2:]
        pads = []
        for size, k in ((x.shape[3], kw), (x.shape[2], kh)):
            total = max((-(-size // stride) - 1) * stride + k - size, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads)
    return F.conv2d(x, weight, b, stride=stride)


# --- case 1: conv-relu-maxpool ×2, channel-last flatten, dense-relu, dense, softmax ----


def _weights_small(g):
    return {
        "c1": _w(g, 3, 3, 3, 8, fan_in=27),
        "b1": _w(g, 8, fan_in=4),
        "c2": _w(g, 3, 3, 8, 12, fan_in=72),
        "b2": _w(g, 12, fan_in=4),
        "d1": _w(g, 24, 12 * 6 * 6, fan_in=432),
        "e1": _w(g, 24, fan_in=4),
        "d2": _w(g, 4, 24, fan_in=24),
        "e2": _w(g, 4, fan_in=4),
    }


def _layers_small(builder, w) -> str:
    _conv(builder, "conv1", w["c1"], w["b1"], "image", "c1")
    builder.add_activation("relu1", "RELU", "c1", "r1")
    builder.add_pooling("pool1", 2, 2, 2, 2, "MAX", "VALID", "r1", "p1")
    _conv(builder, "conv2", w["c2"], w["b2"], "p1", "c2", mode="valid")
    builder.add_activation("relu2", "RELU", "c2", "r2")
    builder.add_pooling("pool2", 2, 2, 2, 2, "MAX", "VALID", "r2", "p2")
    builder.add_flatten("flatten", 1, "p2", "f")  # CHANNEL_LAST, as Keras flattens
    builder.add_inner_product("dense1", w["d1"], w["e1"], 432, 24, True, "f", "d1")
    builder.add_activation("relu3", "RELU", "d1", "r3")
    builder.add_inner_product("dense2", w["d2"], w["e2"], 24, 4, True, "r3", "d2")
    builder.add_softmax("softmax", "d2", "probs")
    return "probs"


def _torch_small(x, w):
    x = F.max_pool2d(F.relu(_torch_conv(x, w["c1"], w["b1"])), 2)
    x = F.max_pool2d(F.relu(_torch_conv(x, w["c2"], w["b2"], same=False)), 2)
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    x = F.relu(F.linear(x, w["d1"], w["e1"]))
    return F.softmax(F.linear(x, w["d2"], w["e2"]), dim=1)


# --- case 2: strided same conv, batchnorm, leaky ReLU, average pool, global pool ------


def _weights_bn(g):
    return {
        "c1": _w(g, 3, 3, 3, 6, fan_in=27),
        "b1": _w(g, 6, fan_in=4),
        "gamma": g.uniform(0.5, 1.5, 6).astype(np.float32),
        "beta": _w(g, 6, fan_in=4),
        "mean": _w(g, 6, fan_in=4),
        "var": g.uniform(0.5, 2.0, 6).astype(np.float32),
        "c2": _w(g, 5, 5, 6, 10, fan_in=150),
        "b2": _w(g, 10, fan_in=4),
        "d1": _w(g, 4, 10, fan_in=10),
        "e1": _w(g, 4, fan_in=4),
    }


def _layers_bn(builder, w) -> str:
    _conv(builder, "conv1", w["c1"], w["b1"], "image", "c1", stride=2)
    builder.add_batchnorm(
        "bn1",
        6,
        w["gamma"],
        w["beta"],
        mean=w["mean"],
        variance=w["var"],
        input_name="c1",
        output_name="n1",
        epsilon=1e-3,
    )
    builder.add_activation("leaky1", "LEAKYRELU", "n1", "r1", params=[0.3])
    builder.add_pooling("avg1", 2, 2, 2, 2, "AVERAGE", "VALID", "r1", "p1")
    _conv(builder, "conv2", w["c2"], w["b2"], "p1", "c2")
    builder.add_activation("tanh2", "TANH", "c2", "r2")
    builder.add_pooling("gap", 0, 0, 1, 1, "AVERAGE", "VALID", "r2", "p2", is_global=True)
    builder.add_flatten("flatten", 1, "p2", "f")
    builder.add_inner_product("dense1", w["d1"], w["e1"], 10, 4, True, "f", "d1")
    builder.add_softmax("softmax", "d1", "probs")
    return "probs"


def _torch_bn(x, w):
    x = _torch_conv(x, w["c1"], w["b1"], stride=2)
    x = F.batch_norm(x, w["mean"], w["var"], w["gamma"], w["beta"], eps=1e-3)
    x = F.avg_pool2d(F.leaky_relu(x, 0.3), 2)
    x = torch.tanh(_torch_conv(x, w["c2"], w["b2"]))
    x = x.mean(dim=(2, 3))
    return F.softmax(F.linear(x, w["d1"], w["e1"]), dim=1)


# --- case 3: grayscale, sigmoid, two dense layers with a hidden tanh ------------------


def _weights_gray(g):
    return {
        "c1": _w(g, 5, 5, 1, 4, fan_in=25),
        "b1": _w(g, 4, fan_in=4),
        "d1": _w(g, 16, 4 * 8 * 8, fan_in=256),
        "e1": _w(g, 16, fan_in=4),
        "d2": _w(g, 4, 16, fan_in=16),
        "e2": _w(g, 4, fan_in=4),
    }


def _layers_gray(builder, w) -> str:
    _conv(builder, "conv1", w["c1"], w["b1"], "image", "c1")
    builder.add_activation("sig1", "SIGMOID", "c1", "s1")
    builder.add_pooling("pool1", 4, 4, 4, 4, "MAX", "VALID", "s1", "p1")
    builder.add_flatten("flatten", 1, "p1", "f")
    builder.add_inner_product("dense1", w["d1"], w["e1"], 256, 16, True, "f", "d1")
    builder.add_activation("tanh1", "TANH", "d1", "t1")
    builder.add_inner_product("dense2", w["d2"], w["e2"], 16, 4, True, "t1", "d2")
    builder.add_softmax("softmax", "d2", "probs")
    return "probs"


def _torch_gray(x, w):
    x = F.max_pool2d(torch.sigmoid(_torch_conv(x, w["c1"], w["b1"])), 4)
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    x = torch.tanh(F.linear(x, w["d1"], w["e1"]))
    return F.softmax(F.linear(x, w["d2"], w["e2"]), dim=1)


CASES = {
    "conv-pool-dense-rgb": Case(
        3, 28, False, 1 / 255, (-0.5, -0.4, -0.3), _layers_small, _torch_small, _weights_small
    ),
    "batchnorm-global-pool-bgr": Case(
        3, 32, True, 1 / 127.5, (-1.0, -0.8, -0.6), _layers_bn, _torch_bn, _weights_bn
    ),
    "gray-sigmoid-tanh": Case(
        1, 32, False, 1 / 255, (0.1,), _layers_gray, _torch_gray, _weights_gray
    ),
}


def _build(case: Case, weights: dict[str, np.ndarray]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder

        builder = NeuralNetworkBuilder(
            [("image", datatypes.Array(case.channels, case.size, case.size))],
            [("probs", None)],
            mode="classifier",
        )
        case.layers(builder, weights)
        builder.set_class_labels(
            LABELS, predicted_feature_name="classLabel", prediction_blob="probs"
        )
        if case.channels == 3:
            red, green, blue = case.bias
            builder.set_pre_processing_parameters(
                image_input_names=["image"],
                is_bgr=case.is_bgr,
                red_bias=red,
                green_bias=green,
                blue_bias=blue,
                image_scale=case.scale,
            )
        else:
            builder.set_pre_processing_parameters(
                image_input_names=["image"], gray_bias=case.bias[0], image_scale=case.scale
            )
    spec = builder.spec
    spec.description.input[0].type.imageType.colorSpace = (
        proto.FeatureTypes_pb2.ImageFeatureType.GRAYSCALE
        if case.channels == 1
        else proto.FeatureTypes_pb2.ImageFeatureType.BGR
        if case.is_bgr
        else proto.FeatureTypes_pb2.ImageFeatureType.RGB
    )
    return spec


@pytest.mark.parametrize("name", list(CASES))
def test_keras_style_classifier_matches_torch(name: str) -> None:
    case = CASES[name]
    g = rng(len(name))
    weights = case.weights(g)
    spec = _build(case, weights)
    # Pixels as the image decoder delivers them: [N, C, H, W] in 0..255, in the
    # colour order of the model (RGB, BGR or gray).
    pixels = g.integers(0, 256, size=(BATCH, case.channels, case.size, case.size))
    pixels = pixels.astype(np.float32)
    predictions = Predictor(spec, cache=False).predict_tensors({"image": pixels})

    # The scaler: channelScale * x + per-channel bias (red, green, blue in RGB order;
    # a BGR model's first channel is blue).
    bias = np.asarray(case.bias[::-1] if case.is_bgr else case.bias, dtype=np.float64)
    x = pixels.astype(np.float64) * case.scale + bias.reshape(1, -1, 1, 1)
    tw = {k: torch.from_numpy(v).double() for k, v in weights.items()}
    with torch.no_grad():
        expected = case.torch_forward(torch.from_numpy(x), tw).numpy()

    got = np.array([[p.probabilities[label] for label in LABELS] for p in predictions])
    assert_close(got, expected)
    assert [p.label for p in predictions] == [LABELS[i] for i in expected.argmax(axis=1)]
