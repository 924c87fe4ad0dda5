"""The compiler around the layers: inputs and their layouts, preprocessing (scaler in
every colour space, mean image), the batch dimension, cutting a network
(``stop_before``/``outputs``) and the errors it raises before anything runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from mlupdated.engine.compile import compile_network, default_outputs
from mlupdated.engine.runtime import Session
from mlupdated.errors import InvalidModelError, UnsupportedModelError

from .helpers import assert_close, build_spec, rng, run_spec

H, W = 4, 5


def _image_spec(channels: int, *, is_bgr: bool = False, **scaler):
    def add(b):
        b.add_activation("id", "LINEAR", "image", "y", params=[1.0, 0.0])
        b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=is_bgr, **scaler)

    return build_spec({"image": (channels, H, W)}, ["y"], add)


@pytest.mark.parametrize("is_bgr", [False, True])
def test_scaler_on_colour_images(is_bgr: bool) -> None:
    spec = _image_spec(
        3, is_bgr=is_bgr, image_scale=0.5, red_bias=-1.0, green_bias=2.0, blue_bias=-3.0
    )
    x = rng().uniform(0, 255, (2, 3, H, W)).astype(np.float32)
    got = run_spec(spec, {"image": x})["y"]
    # Channel order is the image's: RGB, or BGR (blue first).
    bias = [-3.0, 2.0, -1.0] if is_bgr else [-1.0, 2.0, -3.0]
    assert_close(got, 0.5 * x + np.array(bias, dtype=np.float32).reshape(1, 3, 1, 1))


def test_scaler_on_grayscale_images() -> None:
    spec = _image_spec(1, image_scale=1 / 255, gray_bias=-0.25)
    assert spec.description.input[0].type.imageType.colorSpace == 10  # GRAYSCALE
    x = rng(1).uniform(0, 255, (3, 1, H, W)).astype(np.float32)
    assert_close(run_spec(spec, {"image": x})["y"], x / 255 - 0.25)


def test_compiling_leaves_the_spec_as_it_was() -> None:
    # The first layer reads the preprocessed image under the input's name; the compiler
    # must resolve that on its own copy, never by editing (and restoring) the caller's spec.
    spec = _image_spec(3, image_scale=0.5, red_bias=-1.0)
    before = spec.SerializeToString()
    graph = compile_network(spec)
    assert spec.SerializeToString() == before
    assert list(spec.neuralNetwork.layers[0].input) == ["image"]
    node_inputs = {name for node in graph.graph.node for name in node.input}
    assert "image" in node_inputs


def test_mean_image() -> None:
    spec = _image_spec(3)
    pre = spec.neuralNetwork.preprocessing[0]
    pre.ClearField("scaler")
    mean = rng(2).uniform(0, 255, (3, H, W)).astype(np.float32)
    pre.meanImage.meanImage.extend(mean.reshape(-1).tolist())
    x = rng(3).uniform(0, 255, (2, 3, H, W)).astype(np.float32)
    assert_close(run_spec(spec, {"image": x})["y"], x - mean, atol=1e-3)


def test_vector_input_is_seen_as_n_c_1_1() -> None:
    spec = build_spec({"x": (6,)}, ["y"], lambda b: b.add_softmax("sm", "x", "y"))
    x = rng(4).standard_normal((5, 6)).astype(np.float32)
    got = run_spec(spec, {"x": x})["y"]
    e = np.exp(x - x.max(1, keepdims=True))
    assert_close(got, (e / e.sum(1, keepdims=True)).reshape(5, 6, 1, 1))


def _three_layers():
    r = rng(5)
    w1 = r.standard_normal((4, 6)).astype(np.float32)
    w2 = r.standard_normal((3, 4)).astype(np.float32)

    def add(b):
        b.add_inner_product("fc1", w1, None, 6, 4, False, "x", "h")
        b.add_activation("relu", "RELU", "h", "r")
        b.add_inner_product("fc2", w2, None, 4, 3, False, "r", "y")

    return build_spec({"x": (6,)}, ["y"], add), w1, w2


def test_stop_before_returns_what_the_rest_needs() -> None:
    spec, w1, w2 = _three_layers()
    assert default_outputs(spec, stop_before=2) == ["r"]
    assert default_outputs(spec) == ["y"]
    x = rng(6).standard_normal((4, 6)).astype(np.float32)
    features = Session(compile_network(spec, stop_before=2)).run({"x": x})
    assert list(features) == ["r"]
    assert_close(features["r"], np.maximum(x @ w1.T, 0).reshape(4, 4, 1, 1))
    full = run_spec(spec, {"x": x}, outputs=["h", "y"])
    assert_close(full["h"], (x @ w1.T).reshape(4, 4, 1, 1))
    assert_close(full["y"], (np.maximum(x @ w1.T, 0) @ w2.T).reshape(4, 3, 1, 1))


def test_batch_is_free_or_fixed() -> None:
    spec, _, _ = _three_layers()
    free = compile_network(spec).graph.input[0].type.tensor_type.shape.dim[0]
    assert free.dim_param and not free.dim_value
    fixed = compile_network(spec, batch=7).graph.input[0].type.tensor_type.shape.dim[0]
    assert fixed.dim_value == 7
    onnx.checker.check_model(compile_network(spec, batch=7))


def test_structure_errors_name_the_layer() -> None:
    spec = build_spec({"x": (6,)}, ["y"], lambda b: b.add_softmax("lost", "nowhere", "y"))
    with pytest.raises(InvalidModelError, match="'nowhere'") as info:
        compile_network(spec)
    assert info.value.layer == "lost"
    good, _, _ = _three_layers()
    with pytest.raises(InvalidModelError, match="stop_before"):
        compile_network(good, stop_before=9)
    with pytest.raises(InvalidModelError, match="'ghost'"):
        compile_network(good, outputs=["ghost"])


def test_not_a_neural_network_is_refused() -> None:
    from mlupdated.coreml.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.kNearestNeighborsClassifier.numberOfNeighbors.defaultValue = 3
    with pytest.raises(UnsupportedModelError):
        compile_network(spec)


def test_unsupported_layer_after_the_cut_does_not_matter() -> None:
    from mlupdated.coreml.proto import NeuralNetwork_pb2
    from mlupdated.errors import UnsupportedLayerError

    def add(b):
        b.add_activation("relu", "RELU", "x", "h")
        custom = NeuralNetwork_pb2.CustomLayerParams(className="Later")
        b.add_custom("later", ["h"], ["y"], custom_proto_spec=custom)

    spec = build_spec({"x": (3,)}, ["y"], add)
    with pytest.raises(UnsupportedLayerError, match="'later'"):
        compile_network(spec)
    x = rng(7).standard_normal((2, 3)).astype(np.float32)
    prefix = Session(compile_network(spec, stop_before=1)).run({"x": x})
    assert_close(prefix["h"], np.maximum(x, 0).reshape(2, 3, 1, 1))


def test_weights_that_do_not_fit_the_input_are_refused_at_compile_time() -> None:
    weights = np.ones((4, 5), np.float32)  # made for 5 inputs, fed 3
    spec = build_spec(
        {"x": (3,)},
        ["y"],
        lambda b: b.add_inner_product("fc_bad", weights, None, 5, 4, False, "x", "y"),
    )
    with pytest.raises(InvalidModelError, match="'fc_bad'") as info:
        compile_network(spec)
    assert info.value.layer == "fc_bad"


def test_exact_mapped_input_without_leading_one_gets_a_batch_axis() -> None:
    spec = build_spec(
        {"x": (5,)}, ["y"], lambda b: b.add_softmax_nd("sm", "x", "y", axis=-1), nd=True
    )
    x = rng(8).standard_normal((3, 5)).astype(np.float32)
    e = np.exp(x - x.max(1, keepdims=True))
    assert_close(run_spec(spec, {"x": x})["y"], e / e.sum(1, keepdims=True))
