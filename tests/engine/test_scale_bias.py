"""``scale`` and ``bias`` with every allowed parameter shape, against NumPy broadcasting
of ``[1]``, ``[C]`` (as ``[C, 1, 1]``), ``[1, H, W]`` and ``[C, H, W]``."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, rng, run_one_layer

_C, _H, _W = 3, 4, 5
_SHAPES = [(1,), (_C,), (1, _H, _W), (_C, _H, _W)]


def _broadcast(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return values.reshape((_C, 1, 1) if shape == (_C,) else shape)


@pytest.mark.parametrize("shape_scale", _SHAPES)
@pytest.mark.parametrize("shape_bias", [None, *_SHAPES])
def test_scale_with_optional_bias(shape_scale, shape_bias) -> None:
    g = rng(len(shape_scale) * 10 + (len(shape_bias) if shape_bias else 0))
    x = g.standard_normal((2, _C, _H, _W)).astype(np.float32)
    scale = g.standard_normal(int(np.prod(shape_scale))).astype(np.float32)
    bias = g.standard_normal(int(np.prod(shape_bias))).astype(np.float32) if shape_bias else None

    def add(builder):
        builder.add_scale(
            "s",
            W=scale.reshape(shape_scale),
            b=bias.reshape(shape_bias) if shape_bias else None,
            has_bias=shape_bias is not None,
            input_name="x",
            output_name="y",
            shape_scale=list(shape_scale),
            shape_bias=list(shape_bias) if shape_bias else None,
        )

    y = run_one_layer(add, {"x": (_C, _H, _W)}, {"x": x})
    expected = x * _broadcast(scale, shape_scale)
    if shape_bias:
        expected = expected + _broadcast(bias, shape_bias)
    assert_close(y, expected)


@pytest.mark.parametrize("shape_bias", _SHAPES)
def test_bias(shape_bias) -> None:
    g = rng(len(shape_bias))
    x = g.standard_normal((3, _C, _H, _W)).astype(np.float32)
    bias = g.standard_normal(int(np.prod(shape_bias))).astype(np.float32)

    def add(builder):
        builder.add_bias("b", bias.reshape(shape_bias), "x", "y", shape_bias=list(shape_bias))

    y = run_one_layer(add, {"x": (_C, _H, _W)}, {"x": x})
    assert_close(y, x + _broadcast(bias, shape_bias))


def test_bias_shape_outside_the_allowed_set_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        layer = builder.add_bias("b", np.ones(3, np.float32), "x", "y", shape_bias=[3])
        layer.bias.shape[:] = [1, 3]

    with pytest.raises(InvalidModelError, match="'b'"):
        run_one_layer(add, {"x": (3, 4, 5)}, {"x": np.zeros((1, 3, 4, 5), np.float32)})
