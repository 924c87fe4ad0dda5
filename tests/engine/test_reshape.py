"""The reshape family against NumPy: flatten (both orders), flattenTo2D, reshape
(both orders), reshapeStatic, rankPreservingReshape, reshapeLike, permute,
transpose, squeeze, expandDims, copy — batch kept at axis 0 throughout."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, rng, run_one_layer

N = 3


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal((N, *shape)).astype(np.float32)


@pytest.mark.parametrize("mode", [0, 1])
def test_flatten(mode: int) -> None:
    x = _x(2, 3, 4)
    got = run_one_layer(lambda b: b.add_flatten("f", mode, "x", "y"), {"x": (2, 3, 4)}, {"x": x})
    source = x if mode == 0 else x.transpose(0, 2, 3, 1)
    assert_close(got, source.reshape(N, -1, 1, 1))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_flatten_to_2d(axis: int) -> None:
    x = _x(2, 3, 4)
    got = run_one_layer(
        lambda b: b.add_flatten_to_2d("f", "x", "y", axis=axis),
        {"x": (1, 2, 3, 4)},
        {"x": x},
        nd=True,
    )
    a = axis % 4
    assert_close(got, x.reshape(int(np.prod(x.shape[:a])), -1))


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("target", [(4, 3, 2), (1, 6, 2, 2)])
def test_reshape(mode: int, target) -> None:
    x = _x(2, 3, 4, seed=1)
    got = run_one_layer(
        lambda b: b.add_reshape("r", "x", "y", target, mode), {"x": (2, 3, 4)}, {"x": x}
    )
    c, h, w = target[-3:]
    if mode == 0:
        expected = x.reshape(N, c, h, w)
    else:
        expected = x.transpose(0, 2, 3, 1).reshape(N, h, w, c).transpose(0, 3, 1, 2)
    assert_close(got, expected)


@pytest.mark.parametrize("target", [(1, 24), (1, -1), (1, 4, 6), (1, 2, 2, 3, 2)])
def test_reshape_static(target) -> None:
    x = _x(2, 3, 4, seed=2)
    got = run_one_layer(
        lambda b: b.add_reshape_static("r", "x", "y", target),
        {"x": (1, 2, 3, 4)},
        {"x": x},
        nd=True,
    )
    assert_close(got, x.reshape(N, *target[1:]))


def test_rank_preserving_reshape() -> None:
    x = _x(2, 3, 4, seed=3)
    got = run_one_layer(
        lambda b: b.add_rank_preserving_reshape("r", "x", "y", (1, 4, -1, 3)),
        {"x": (1, 2, 3, 4)},
        {"x": x},
        nd=True,
    )
    assert_close(got, x.reshape(N, 4, 2, 3))


def test_reshape_like() -> None:
    x, ref = _x(2, 3, 4, seed=4), _x(6, 4, seed=5)
    got = run_one_layer(
        lambda b: b.add_reshape_like("r", ["x", "ref"], "y"),
        {"x": (1, 2, 3, 4), "ref": (1, 6, 4)},
        {"x": x, "ref": ref},
        nd=True,
    )
    assert_close(got, x.reshape(N, 6, 4))


@pytest.mark.parametrize("dim", [(0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 2, 1), (0, 2, 3, 1)])
def test_permute(dim) -> None:
    x = _x(2, 3, 4, seed=6)
    got = run_one_layer(lambda b: b.add_permute("p", dim, "x", "y"), {"x": (2, 3, 4)}, {"x": x})
    assert_close(got, x.transpose(*dim))


@pytest.mark.parametrize("axes", [(0, 2, 1, 3), (0, 3, 1, 2)])
def test_transpose(axes) -> None:
    x = _x(2, 3, 4, seed=7)
    got = run_one_layer(
        lambda b: b.add_transpose("t", axes, "x", "y"), {"x": (1, 2, 3, 4)}, {"x": x}, nd=True
    )
    assert_close(got, x.transpose(*axes))


@pytest.mark.parametrize(
    ("axes", "squeeze_all", "expected_shape"),
    [((2,), False, (N, 3, 4)), ((-1,), False, (N, 3, 1)), (None, True, (N, 3))],
)
def test_squeeze(axes, squeeze_all, expected_shape) -> None:
    shape = (1, 3, 1, 1) if axes != (2,) else (1, 3, 1, 4)
    x = _x(*shape[1:], seed=8)
    got = run_one_layer(
        lambda b: b.add_squeeze("s", "x", "y", axes=axes, squeeze_all=squeeze_all),
        {"x": shape},
        {"x": x},
        nd=True,
    )
    assert_close(got, x.reshape(expected_shape))


@pytest.mark.parametrize(
    ("axes", "expected_shape"), [((1,), (N, 1, 3, 4)), ((-1, 2), (N, 3, 1, 4, 1))]
)
def test_expand_dims(axes, expected_shape) -> None:
    x = _x(3, 4, seed=9)
    got = run_one_layer(
        lambda b: b.add_expand_dims("e", "x", "y", axes=axes), {"x": (1, 3, 4)}, {"x": x}, nd=True
    )
    assert_close(got, x.reshape(expected_shape))


def test_copy() -> None:
    x = _x(2, 3, 4, seed=10)
    got = run_one_layer(lambda b: b.add_copy("c", "x", "y"), {"x": (2, 3, 4)}, {"x": x})
    assert_close(got, x)


def test_transpose_that_moves_the_batch_axis_is_refused() -> None:
    from mlupdated.engine.compile import compile_network
    from mlupdated.errors import UnsupportedLayerError

    from .helpers import build_spec

    spec = build_spec(
        {"x": (1, 2, 3)}, ["y"], lambda b: b.add_transpose("tb", (1, 0, 2), "x", "y"), nd=True
    )
    with pytest.raises(UnsupportedLayerError, match="'tb'.*batch"):
        compile_network(spec)


@pytest.mark.parametrize("axes", [(0,), (0, 1), (0, -1)])
def test_expand_dims_before_the_batch_keeps_the_batch_first(axes) -> None:
    """Core ML inserts the axis in front of each example's batch-of-one axis; for a
    batch that is one more size-1 axis after the batch."""
    x = _x(3, 4, seed=10)
    got = run_one_layer(
        lambda b: b.add_expand_dims("e", "x", "y", axes=axes), {"x": (1, 3, 4)}, {"x": x}, nd=True
    )
    per_example = np.concatenate([np.expand_dims(x[i : i + 1], axes) for i in range(N)])
    assert_close(got, per_example)
