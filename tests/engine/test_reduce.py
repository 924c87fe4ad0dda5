"""Classic ``reduce`` and the ND ``reduce*`` layers against PyTorch."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer

_CLASSIC_AXES = {"CHW": (-3, -2, -1), "HW": (-2, -1), "C": (-3,), "H": (-2,), "W": (-1,)}
_EPS = 1e-6


def _seed(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def _classic_reference(x: np.ndarray, mode: str, axes: tuple[int, ...], eps: float):
    t = torch.from_numpy(x).double()
    if mode == "sum":
        out = t.sum(dim=axes, keepdim=True)
    elif mode == "avg":
        out = t.mean(dim=axes, keepdim=True)
    elif mode == "prod":
        out = t
        for axis in axes:
            out = out.prod(dim=axis, keepdim=True)
    elif mode == "logsum":
        out = torch.log(t + eps).sum(dim=axes, keepdim=True)
    elif mode == "sumsquare":
        out = (t * t).sum(dim=axes, keepdim=True)
    elif mode == "L1":
        out = t.abs().sum(dim=axes, keepdim=True)
    elif mode == "L2":
        out = t.pow(2).sum(dim=axes, keepdim=True).sqrt()
    elif mode == "max":
        out = t.amax(dim=axes, keepdim=True)
    elif mode == "min":
        out = t.amin(dim=axes, keepdim=True)
    elif mode == "argmax":
        out = t.argmax(dim=axes[0], keepdim=True).double()
    return out.numpy()


@pytest.mark.parametrize(
    "mode", ["sum", "avg", "prod", "logsum", "sumsquare", "L1", "L2", "max", "min"]
)
@pytest.mark.parametrize("axis", list(_CLASSIC_AXES))
def test_classic_reduce_matches_torch(mode: str, axis: str) -> None:
    g = rng(_seed(mode, axis))
    # A random [C, H, W]; products stay small (float32 rounding grows with their size).
    shape = tuple(int(d) for d in g.integers(1, 5 if mode == "prod" else 7, size=3))
    # Positive values near 1 keep PROD and LOGSUM well conditioned.
    x = g.uniform(0.5, 1.5, size=(2, *shape)).astype(np.float32)
    eps = 1e-3 if mode == "logsum" else _EPS

    def add(builder):
        builder.add_reduce("r", "x", "y", axis=axis, mode=mode, epsilon=eps)

    y = run_one_layer(add, {"x": shape}, {"x": x})
    assert_close(y, _classic_reference(x, mode, _CLASSIC_AXES[axis], eps))


@pytest.mark.parametrize("axis", ["C", "H", "W"])
def test_classic_argmax_gives_float_indices(axis: str) -> None:
    g = rng(7)
    x = g.standard_normal((3, 4, 6, 5)).astype(np.float32)

    def add(builder):
        builder.add_reduce("r", "x", "y", axis=axis, mode="argmax")

    y = run_one_layer(add, {"x": (4, 6, 5)}, {"x": x})
    assert y.dtype == np.float32
    assert_close(y, _classic_reference(x, "argmax", _CLASSIC_AXES[axis], 0.0))


def test_classic_logsum_epsilon_zero_means_default() -> None:
    x = rng(3).uniform(0.0, 1.0, size=(2, 2, 3, 3)).astype(np.float32)

    def add(builder):
        layer = builder.add_reduce("r", "x", "y", axis="HW", mode="logsum")
        layer.reduce.epsilon = 0.0

    y = run_one_layer(add, {"x": (2, 3, 3)}, {"x": x})
    assert_close(y, _classic_reference(x, "logsum", (-2, -1), _EPS))


def test_classic_argmax_over_several_axes_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        builder.add_reduce("r", "x", "y", axis="HW", mode="argmax")

    with pytest.raises(InvalidModelError, match="ARGMAX"):
        run_one_layer(add, {"x": (2, 3, 3)}, {"x": np.zeros((1, 2, 3, 3), np.float32)})


_ND = {
    "sum": lambda t, d, k: t.sum(dim=d, keepdim=k),
    "mean": lambda t, d, k: t.mean(dim=d, keepdim=k),
    "max": lambda t, d, k: t.amax(dim=d, keepdim=k),
    "min": lambda t, d, k: t.amin(dim=d, keepdim=k),
    "prod": lambda t, d, k: _prod(t, d, k),
    "l1": lambda t, d, k: t.abs().sum(dim=d, keepdim=k),
    "l2": lambda t, d, k: t.pow(2).sum(dim=d, keepdim=k).sqrt(),
    "sumsquare": lambda t, d, k: t.pow(2).sum(dim=d, keepdim=k),
    "logsum": lambda t, d, k: t.sum(dim=d, keepdim=k).log(),
    "logsumexp": lambda t, d, k: torch.logsumexp(t, dim=d, keepdim=k),
}


def _prod(t: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for axis in sorted((d % t.dim() for d in dims), reverse=True):
        t = t.prod(dim=axis, keepdim=keep)
    return t


@pytest.mark.parametrize("op", list(_ND))
@pytest.mark.parametrize(
    ("axes", "keep"), [((1,), True), ((-1,), False), ((1, 3), False), ((-2, -1), True)]
)
def test_nd_reduce_matches_torch(op: str, axes: tuple[int, ...], keep: bool) -> None:
    g = rng(_seed(op, axes, keep))
    shape = (1, *(int(d) for d in g.integers(2, 5 if op == "prod" else 7, size=3)))
    x = g.uniform(0.5, 1.5, size=(2, *shape[1:])).astype(np.float32)

    def add(builder):
        getattr(builder, f"add_reduce_{op}")("r", "x", "y", axes=list(axes), keepdims=keep)

    y = run_one_layer(add, {"x": shape}, {"x": x}, nd=True)
    expected = _ND[op](torch.from_numpy(x).double(), axes, keep).numpy()
    assert_close(y, expected)


@pytest.mark.parametrize("op", ["sum", "l2", "logsumexp"])
@pytest.mark.parametrize("keep", [True, False])
def test_nd_reduce_all_reduces_each_example(op: str, keep: bool) -> None:
    x = rng(11).uniform(0.5, 1.5, size=(3, 2, 4)).astype(np.float32)

    def add(builder):
        getattr(builder, f"add_reduce_{op}")("r", "x", "y", keepdims=keep, reduce_all=True)

    y = run_one_layer(add, {"x": (1, 2, 4)}, {"x": x}, nd=True)
    # Per example, as Core ML runs them one by one: [1,...] there, the batch here.
    expected = np.stack(
        [_ND[op](torch.from_numpy(e[None]).double(), (0, 1, 2), keep).numpy() for e in x]
    )
    expected = expected.reshape((3, 1, 1) if keep else (3,))
    assert_close(y, expected)


def test_nd_reduce_naming_the_batch_axis_reduces_a_size_one_axis() -> None:
    x = rng(5).standard_normal((2, 3, 4)).astype(np.float32)

    def add(builder):
        builder.add_reduce_l1("r", "x", "y", axes=[0], keepdims=True)

    y = run_one_layer(add, {"x": (1, 3, 4)}, {"x": x}, nd=True)
    assert_close(y, np.abs(x))


def test_nd_reduce_dropping_the_batch_axis_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        builder.add_reduce_sum("r", "x", "y", axes=[0, 1], keepdims=False)

    with pytest.raises(UnsupportedLayerError, match="batch axis"):
        run_one_layer(add, {"x": (1, 3, 4)}, {"x": np.zeros((1, 3, 4), np.float32)}, nd=True)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize(("axis", "remove"), [(1, False), (-1, True), (2, True), (-2, False)])
def test_nd_arg_extremes_match_torch(op: str, axis: int, remove: bool) -> None:
    x = rng(_seed(op, axis, remove)).standard_normal((3, 4, 5, 6)).astype(np.float32)

    def add(builder):
        getattr(builder, f"add_{op}")("a", "x", "y", axis=axis, keepdims=not remove)

    y = run_one_layer(add, {"x": (1, 4, 5, 6)}, {"x": x}, nd=True)
    expected = getattr(torch.from_numpy(x), op)(dim=axis, keepdim=not remove)
    assert y.dtype == np.float32
    assert_close(y, expected.numpy().astype(np.float32))


def test_nd_argmax_over_the_batch_axis_is_index_zero() -> None:
    x = rng(8).standard_normal((3, 4)).astype(np.float32)

    def add(builder):
        builder.add_argmax("a", "x", "y", axis=0, keepdims=True)

    y = run_one_layer(add, {"x": (1, 4)}, {"x": x}, nd=True)
    assert_close(y, np.zeros_like(x))
