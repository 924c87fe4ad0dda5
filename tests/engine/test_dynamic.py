"""Layers with shapes computed at run time against NumPy: getShape (1 for the batch
axis, as Core ML sees each example), fillLike/Static/Dynamic, reshapeDynamic,
sliceDynamic, broadcastToLike/Static/Dynamic."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, rng, run_one_layer

N = 3


def _x(*shape: int, seed: int) -> np.ndarray:
    return rng(seed).standard_normal((N, *shape)).astype(np.float32)


def _const(b, name: str, value) -> None:
    value = np.asarray(value, dtype=np.float32)
    b.add_load_constant_nd(name, name, value, value.shape)


def test_get_shape_says_one_for_the_batch() -> None:
    x = _x(2, 5, seed=1)
    got = run_one_layer(
        lambda b: b.add_get_shape("s", "x", "y"), {"x": (1, 2, 5)}, {"x": x}, nd=True
    )
    assert_close(got, np.array([1, 2, 5], dtype=np.float32))


def test_fill_like() -> None:
    x = _x(2, 5, seed=2)
    got = run_one_layer(
        lambda b: b.add_fill_like("f", "x", "y", value=2.5), {"x": (1, 2, 5)}, {"x": x}, nd=True
    )
    assert_close(got, np.full_like(x, 2.5))


def test_fill_static_broadcasts_over_the_batch() -> None:
    x = _x(2, 5, seed=3)

    def add(b) -> None:
        b.add_fill_static("f", "filled", [1, 2, 5], value=-1.5)
        b.add_add_broadcastable("a", ["x", "filled"], "y")

    got = run_one_layer(add, {"x": (1, 2, 5)}, {"x": x}, nd=True)
    assert_close(got, x - 1.5)


def test_fill_dynamic_from_get_shape() -> None:
    x = _x(4, 3, seed=4)

    def add(b) -> None:
        b.add_get_shape("s", "x", "shape")
        b.add_fill_dynamic("f", "shape", "y", value=7.0)

    got = run_one_layer(add, {"x": (1, 4, 3)}, {"x": x}, nd=True)
    assert_close(got, np.full((1, 4, 3), 7.0, dtype=np.float32))


@pytest.mark.parametrize("target", [(1, 4, 6), (1, 24), (1, 2, 3, 4)])
def test_reshape_dynamic_keeps_the_batch(target) -> None:
    x = _x(2, 3, 4, seed=5)

    def add(b) -> None:
        _const(b, "shape", target)
        b.add_reshape_dynamic("r", ["x", "shape"], "y")

    got = run_one_layer(add, {"x": (1, 2, 3, 4)}, {"x": x}, nd=True)
    assert_close(got, x.reshape(N, *target[1:]))


def test_reshape_dynamic_to_the_shape_of_another_input() -> None:
    x, ref = _x(2, 6, seed=6), _x(3, 4, seed=7)

    def add(b) -> None:
        b.add_get_shape("s", "ref", "shape")
        b.add_reshape_dynamic("r", ["x", "shape"], "y")

    got = run_one_layer(add, {"x": (1, 2, 6), "ref": (1, 3, 4)}, {"x": x, "ref": ref}, nd=True)
    assert_close(got, x.reshape(N, 3, 4))


@pytest.mark.parametrize(
    ("begin", "end", "strides", "begin_masks", "end_masks", "squeeze", "index"),
    [
        (
            [0, 1, 0],
            [1, 3, 5],
            [1, 1, 2],
            None,
            None,
            None,
            (slice(None), slice(1, 3), slice(0, 5, 2)),
        ),
        (
            [0, -1, 4],
            [1, 0, 0],
            [1, -1, -2],
            None,
            [False, True, True],
            None,
            (slice(None), slice(None, None, -1), slice(4, None, -2)),
        ),
        (
            [0, 2, 1],
            [1, 0, 4],
            [1, 1, 1],
            [False, False, True],
            None,
            [False, True, False],
            (slice(None), 2, slice(None, 4)),
        ),
        (
            [0, -1, 0],
            [1, 0, 5],
            [1, 1, 1],
            None,
            None,
            [False, True, False],
            (slice(None), -1, slice(0, 5)),
        ),
    ],
)
def test_slice_dynamic(begin, end, strides, begin_masks, end_masks, squeeze, index) -> None:
    x = _x(4, 6, seed=8)

    def add(b) -> None:
        _const(b, "begin", begin)
        _const(b, "end", end)
        b.add_slice_dynamic(
            "s",
            ["x", "begin", "end"],
            "y",
            strides=strides,
            begin_masks=begin_masks,
            end_masks=end_masks,
            squeeze_masks=squeeze,
        )

    got = run_one_layer(add, {"x": (1, 4, 6)}, {"x": x}, nd=True)
    assert_close(got, x[index])


def test_slice_dynamic_with_strides_as_an_input() -> None:
    x = _x(5, 6, seed=9)

    def add(b) -> None:
        _const(b, "begin", [0, 4, 1])
        _const(b, "end", [1, 0, 6])
        _const(b, "strides", [1, -2, 2])
        b.add_slice_dynamic("s", ["x", "begin", "end", "strides"], "y")

    got = run_one_layer(add, {"x": (1, 5, 6)}, {"x": x}, nd=True)
    assert_close(got, x[:, 4:0:-2, 1:6:2])


def test_broadcast_to_like_static_dynamic() -> None:
    x, ref = _x(1, 4, seed=10), _x(3, 4, seed=11)
    want = np.broadcast_to(x, (N, 3, 4))
    like = run_one_layer(
        lambda b: b.add_broadcast_to_like("b", ["x", "ref"], "y"),
        {"x": (1, 1, 4), "ref": (1, 3, 4)},
        {"x": x, "ref": ref},
        nd=True,
    )
    static = run_one_layer(
        lambda b: b.add_broadcast_to_static("b", "x", "y", [1, 3, 4]),
        {"x": (1, 1, 4)},
        {"x": x},
        nd=True,
    )

    def dynamic(b) -> None:
        _const(b, "shape", [1, 3, 4])
        b.add_broadcast_to_dynamic("b", ["x", "shape"], "y")

    dyn = run_one_layer(dynamic, {"x": (1, 1, 4)}, {"x": x}, nd=True)
    for got in (like, static, dyn):
        assert_close(got, want)
