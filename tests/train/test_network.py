"""The NumPy suffix computes what the engine computes, for every trainable layer kind.

One network strings together every layer Core ML allows on the backprop path, with the
padding rules that are easy to get wrong (same with odd sizes, explicit borders,
includeLastPixel, average pooling without the padded area, dilation, groups,
channel-last flatten). Its suffix, run in NumPy, must give the engine's output; and
its gradients must match finite differences of that very forward pass.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from mlupdated.coreml.proto import Model_pb2
from mlupdated.engine.graph_cache import load_session
from mlupdated.train.network import SuffixNetwork
from mlupdated.train.split import split_network

SIDE = 11


def every_layer_spec(seed: int = 0) -> Model_pb2.Model:
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    rng = np.random.default_rng(seed)
    b = NeuralNetworkBuilder(
        [("image", datatypes.Array(3, SIDE, SIDE))], [("probs", datatypes.Array(3))]
    )

    def w(*shape):
        return rng.normal(0, 0.5, shape).astype(np.float32)

    b.add_convolution(
        "conv_a",
        3,
        4,
        3,
        3,
        2,
        2,
        "same",
        1,
        w(3, 3, 3, 4),
        w(4),
        True,
        input_name="image",
        output_name="a",
    )
    b.add_batchnorm(
        "bn",
        4,
        w(4),
        w(4),
        w(4),
        rng.uniform(0.5, 2, 4).astype(np.float32),
        input_name="a",
        output_name="bn",
    )
    b.add_activation("sig", "SIGMOID", "bn", "sig")
    b.add_pooling(
        "pool_same",
        3,
        3,
        2,
        2,
        "MAX",
        "SAME",
        "sig",
        "ps",
        same_padding_asymmetry_mode="TOP_LEFT_HEAVY",
    )
    b.add_convolution(
        "conv_b",
        2,
        6,
        2,
        2,
        1,
        1,
        "valid",
        2,
        w(2, 2, 2, 6),
        w(6),
        True,
        input_name="ps",
        output_name="cb",
        dilation_factors=[2, 1],
        padding_top=1,
        padding_bottom=2,
        padding_left=0,
        padding_right=1,
    )
    b.add_activation("tanh", "TANH", "cb", "th")
    b.add_pooling(
        "pool_last",
        2,
        2,
        2,
        2,
        "AVERAGE",
        "INCLUDE_LAST_PIXEL",
        "th",
        "pl",
        exclude_pad_area=True,
        padding_top=1,
        padding_bottom=1,
        padding_left=1,
        padding_right=1,
    )
    b.add_activation("relu", "RELU", "pl", "rl")
    b.add_pooling(
        "pool_valid",
        2,
        2,
        1,
        1,
        "AVERAGE",
        "VALID",
        "rl",
        "pv",
        exclude_pad_area=False,
        padding_top=1,
        padding_bottom=0,
        padding_left=1,
        padding_right=1,
    )
    b.add_flatten("flat", 1, "pv", "fl")
    spec = Model_pb2.Model()
    spec.CopyFrom(b.spec)
    nn = spec.neuralNetwork
    flat_size = _blob_size(spec, "fl")
    with contextlib.redirect_stdout(io.StringIO()):
        b2 = NeuralNetworkBuilder(spec=spec)
        b2.add_inner_product("dense", w(3, flat_size), w(3), flat_size, 3, True, "fl", "logits")
        b2.add_softmax("softmax", "logits", "probs")
    b2.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255)
    spec = Model_pb2.Model()
    spec.CopyFrom(b2.spec)
    nn = spec.neuralNetwork
    for layer in nn.layers:
        if layer.name in ("conv_a", "dense"):
            layer.isUpdatable = True
    loss = nn.updateParams.lossLayers.add()
    loss.name = "loss"
    loss.categoricalCrossEntropyLossLayer.input = "probs"
    loss.categoricalCrossEntropyLossLayer.target = "label"
    return spec


def _blob_size(spec: Model_pb2.Model, blob: str) -> int:
    session = load_session(spec, outputs=[blob], cache=False)
    out = session.run({"image": np.zeros((1, 3, SIDE, SIDE), np.float32)})
    return int(np.prod(next(iter(out.values())).shape[1:]))


@pytest.fixture(scope="module")
def spec():
    return every_layer_spec()


def inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (3, 3, SIDE, SIDE)).astype(np.float32)


def suffix_features(spec, split, x):
    session = load_session(split.prefix_spec, outputs=list(split.cut_blobs), cache=False)
    results = session.run({"image": x})
    return dict(zip(split.cut_blobs, (results[n] for n in session.output_names), strict=True))


def test_suffix_forward_matches_the_engine(spec):
    split = split_network(spec)
    assert split.cut_blobs == ("image",)
    network = SuffixNetwork(spec, split)
    x = inputs(1)
    ours = network.forward(suffix_features(spec, split, x)).data
    engine = load_session(spec, outputs=["probs"], cache=False).run({"image": x})
    theirs = next(iter(engine.values()))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-4)


def test_suffix_gradients_match_finite_differences(spec):
    split = split_network(spec)
    network = SuffixNetwork(spec, split)
    features = suffix_features(spec, split, inputs(2))
    targets = np.array([0, 2, 1])

    def loss_value() -> float:
        return float(network.loss(features, targets).data)

    for param in network.params:
        param.zero_grad()
    network.loss(features, targets).backward()
    rng = np.random.default_rng(3)
    for param in network.params:
        analytic = param.grad.copy()
        flat = param.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            # Float64 copies keep the finite difference above float32 noise.
            original = float(flat[i])
            step = 1e-2
            flat[i] = original + step
            plus = loss_value()
            flat[i] = original - step
            minus = loss_value()
            flat[i] = original
            numeric = (plus - minus) / (2 * step)
            assert analytic.reshape(-1)[i] == pytest.approx(numeric, rel=2e-2, abs=2e-4), (
                param.name,
                i,
            )
