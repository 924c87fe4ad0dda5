"""``loadConstant`` and ``loadConstantND``: the value itself, and its size-1 batch axis
broadcasting against a batched blob in a later layer."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, build_spec, rng, run_spec


def test_load_constant_is_a_chw_blob_with_a_batch_of_one() -> None:
    g = rng(1)
    value = g.standard_normal((3, 4, 5)).astype(np.float32)
    x = g.standard_normal((2, 3, 4, 5)).astype(np.float32)

    def add(builder):
        builder.add_load_constant("k", "k", value, shape=[3, 4, 5])
        builder.add_elementwise("sum", ["x", "k"], "y", mode="ADD")

    spec = build_spec({"x": (3, 4, 5)}, ["y"], add)
    out = run_spec(spec, {"x": x}, outputs=["y", "k"])
    assert_close(out["k"], value[None])
    assert_close(out["y"], x + value[None])


@pytest.mark.parametrize("shape", [(4,), (1, 4), (3, 1), (1, 3, 4), (2, 3, 4)])
def test_load_constant_nd_keeps_its_shape_and_broadcasts(shape) -> None:
    g = rng(len(shape))
    value = g.standard_normal(shape).astype(np.float32)
    x = g.standard_normal((3, 3, 4)).astype(np.float32)
    if shape == (2, 3, 4):
        # A constant whose leading axis is data, not the batch: used whole.
        x = x[:1]

    def add(builder):
        builder.add_load_constant_nd("k", "k", value, shape=list(shape))
        builder.add_add_broadcastable("sum", ["x", "k"], "y")

    spec = build_spec({"x": (1, 3, 4)}, ["y"], add, nd=True)
    out = run_spec(spec, {"x": x}, outputs=["y", "k"])
    assert_close(out["k"], value)
    assert_close(out["y"], x + value)


def test_load_constant_with_a_wrong_shape_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        layer = builder.add_load_constant("k", "k", np.ones(6, np.float32), shape=[1, 2, 3])
        layer.loadConstant.shape[:] = [6]
        builder.add_elementwise("sum", ["x", "k"], "y", mode="ADD")

    spec = build_spec({"x": (1, 2, 3)}, ["y"], add)
    with pytest.raises(InvalidModelError, match="'k'"):
        run_spec(spec, {"x": np.zeros((1, 1, 2, 3), np.float32)})
