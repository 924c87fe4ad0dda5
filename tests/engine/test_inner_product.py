"""innerProduct against PyTorch: classic [N, C, 1, 1] and ND [N, C] inputs, with and
without bias, float16 weights; int8 dynamic quantization is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.errors import UnsupportedLayerError
from torch.nn import functional as F

from .helpers import assert_close, build_spec, rng, run_one_layer, run_spec

C_IN, C_OUT = 12, 5


def _weights(seed: int = 0):
    r = rng(seed)
    return (
        r.standard_normal((C_OUT, C_IN)).astype(np.float32),
        r.standard_normal(C_OUT).astype(np.float32),
    )


@pytest.mark.parametrize("has_bias", [True, False])
def test_classic_vector(has_bias: bool) -> None:
    w, bias = _weights()
    x = rng(1).standard_normal((3, C_IN)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_inner_product(
            "fc", w, bias if has_bias else None, C_IN, C_OUT, has_bias, "x", "y"
        ),
        {"x": (C_IN,)},
        {"x": x},
    )
    t_bias = torch.from_numpy(bias) if has_bias else None
    expected = F.linear(torch.from_numpy(x), torch.from_numpy(w), t_bias).numpy()
    assert_close(got, expected.reshape(3, C_OUT, 1, 1))


def test_nd_rank2_input() -> None:
    w, bias = _weights(2)
    x = rng(3).standard_normal((4, C_IN)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_inner_product("fc", w, bias, C_IN, C_OUT, True, "x", "y"),
        {"x": (1, C_IN)},
        {"x": x},
        nd=True,
    )
    expected = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias))
    assert_close(got, expected.numpy())


def test_float16_weights_are_decoded() -> None:
    w, bias = _weights(4)
    spec = build_spec(
        {"x": (C_IN,)},
        ["y"],
        lambda b: b.add_inner_product("fc", w, bias, C_IN, C_OUT, True, "x", "y"),
    )
    params = spec.neuralNetwork.layers[0].innerProduct.weights
    params.float16Value = w.astype(np.float16).tobytes()
    params.ClearField("floatValue")
    x = rng(5).standard_normal((2, C_IN)).astype(np.float32)
    got = run_spec(spec, {"x": x})["y"]
    w16 = w.astype(np.float16).astype(np.float32)
    assert_close(got, (x @ w16.T + bias).reshape(2, C_OUT, 1, 1))


def test_int8_dynamic_quantize_is_refused() -> None:
    w, bias = _weights()
    spec = build_spec(
        {"x": (C_IN,)},
        ["y"],
        lambda b: b.add_inner_product("fc", w, bias, C_IN, C_OUT, True, "x", "y"),
    )
    spec.neuralNetwork.layers[0].innerProduct.int8DynamicQuantize = True
    with pytest.raises(UnsupportedLayerError, match="int8DynamicQuantize"):
        compile_network(spec)
