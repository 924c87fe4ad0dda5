"""The gather/scatter family against torch (index_select, gather, scatter,
scatter_add, scatter_reduce) and NumPy (take, advanced indexing), with the batch on
axis 0 of the model inputs and constants (loadConstantND) for tables and indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.errors import UnsupportedLayerError

from .helpers import assert_close, build_spec, rng, run_one_layer

N = 3
# torch marks index_reduce (the reference for MUL and DIV) as beta.
pytestmark = pytest.mark.filterwarnings("ignore:index_reduce")


def _x(*shape: int, seed: int) -> np.ndarray:
    return rng(seed).standard_normal((N, *shape)).astype(np.float32)


def _const(b, name: str, value: np.ndarray) -> None:
    b.add_load_constant_nd(name, name, value.astype(np.float32), value.shape)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_gather_from_batched_data_with_constant_indices(axis: int) -> None:
    x = _x(4, 5, seed=1)
    idx = np.array([3, 0, -1, 1])

    def add(b) -> None:
        _const(b, "idx", idx)
        b.add_gather("g", ["x", "idx"], "y", axis=axis)

    got = run_one_layer(add, {"x": (1, 4, 5)}, {"x": x}, nd=True)
    dim = x.shape[axis]
    want = torch.index_select(torch.from_numpy(x), axis % 3, torch.from_numpy(idx % dim))
    assert_close(got, want.numpy())


def test_gather_from_a_table_with_batched_indices() -> None:
    table = rng(2).standard_normal((6, 4)).astype(np.float32)
    idx = rng(3).integers(0, 6, size=(N, 5))

    def add(b) -> None:
        _const(b, "table", table)
        b.add_gather("g", ["table", "idx"], "y", axis=0)

    got = run_one_layer(add, {"idx": (1, 5)}, {"idx": idx.astype(np.float32)}, nd=True)
    assert_close(got, np.take(table, idx, axis=0))


def test_gather_along_the_batch_axis_is_refused() -> None:
    def add(b) -> None:
        _const(b, "idx", np.array([0]))
        b.add_gather("gb", ["x", "idx"], "y", axis=0)

    spec = build_spec({"x": (1, 4)}, ["y"], add, nd=True)
    with pytest.raises(UnsupportedLayerError, match="'gb'.*batch axis"):
        compile_network(spec)


@pytest.mark.parametrize("axis", [1, 2])
def test_gather_along_axis(axis: int) -> None:
    x = _x(4, 5, seed=4)
    shape = (N, 4, 5)
    idx = rng(5).integers(0, shape[axis], size=shape)
    got = run_one_layer(
        lambda b: b.add_gather_along_axis("g", ["x", "idx"], "y", axis=axis),
        {"x": (1, 4, 5), "idx": (1, 4, 5)},
        {"x": x, "idx": idx.astype(np.float32)},
        nd=True,
    )
    assert_close(got, torch.gather(torch.from_numpy(x), axis, torch.from_numpy(idx)).numpy())


def test_gather_nd_from_a_table() -> None:
    table = rng(6).standard_normal((4, 5, 6)).astype(np.float32)
    idx = np.stack([rng(7).integers(0, 4, (N, 3)), rng(8).integers(0, 5, (N, 3))], axis=-1)

    def add(b) -> None:
        _const(b, "table", table)
        b.add_gather_nd("g", ["table", "idx"], "y")

    got = run_one_layer(add, {"idx": (1, 3, 2)}, {"idx": idx.astype(np.float32)}, nd=True)
    assert_close(got, table[idx[..., 0], idx[..., 1]])


_MODES = {
    "UPDATE": lambda out, i, u: out.index_copy_(1, i, u),
    "ADD": lambda out, i, u: out.index_add_(1, i, u),
    "SUB": lambda out, i, u: out.index_add_(1, i, -u),
    "MUL": lambda out, i, u: out.index_reduce_(1, i, u, "prod"),
    "DIV": lambda out, i, u: out.index_reduce_(1, i, 1 / u, "prod"),
}


@pytest.mark.parametrize("mode", sorted(_MODES))
def test_scatter_slices_along_axis_1(mode: str) -> None:
    container, updates = _x(5, 4, seed=9), _x(2, 4, seed=10)
    idx = np.array([3, 1])

    def add(b) -> None:
        _const(b, "idx", idx)
        b.add_scatter("s", ["c", "idx", "u"], "y", axis=1, mode=mode)

    got = run_one_layer(
        add, {"c": (1, 5, 4), "u": (1, 2, 4)}, {"c": container, "u": updates}, nd=True
    )
    want = _MODES[mode](
        torch.from_numpy(container.copy()), torch.from_numpy(idx), torch.from_numpy(updates)
    )
    assert_close(got, want.numpy())


@pytest.mark.parametrize(
    ("mode", "idx", "combine"),
    [
        ("UPDATE", [[0, 4], [2, 3]], lambda old, new: new),
        ("MAX", [[0, 4], [4, 3]], np.maximum),  # index 4 twice
    ],
)
def test_scatter_along_a_middle_axis_with_2d_indices(mode: str, idx, combine) -> None:
    container, updates = _x(3, 5, 4, seed=11), _x(3, 2, 2, 4, seed=12)
    idx = np.array(idx)

    def add(b) -> None:
        _const(b, "idx", idx)
        b.add_scatter("s", ["c", "idx", "u"], "y", axis=2, mode=mode)

    got = run_one_layer(
        add, {"c": (1, 3, 5, 4), "u": (1, 3, 2, 2, 4)}, {"c": container, "u": updates}, nd=True
    )
    want = container.copy()
    for i in range(2):
        for j in range(2):
            want[:, :, idx[i, j]] = combine(want[:, :, idx[i, j]], updates[:, :, i, j])
    assert_close(got, want)


_EXTREMA = {"MAX": ("amax", np.maximum), "MIN": ("amin", np.minimum)}


@pytest.mark.parametrize("mode", sorted(_EXTREMA))
def test_scatter_max_and_min_keep_the_extreme_of_container_and_updates(mode: str) -> None:
    """Several updates land on one slice (index 3 twice, written once as -2): the slice
    keeps the largest (smallest) of its own values and theirs."""
    container, updates = _x(5, 4, seed=19), _x(4, 4, seed=20) * 2
    idx = np.array([3, 1, -2, 0])

    def add(b) -> None:
        _const(b, "idx", idx)
        b.add_scatter("s", ["c", "idx", "u"], "y", axis=1, mode=mode)

    got = run_one_layer(
        add, {"c": (1, 5, 4), "u": (1, 4, 4)}, {"c": container, "u": updates}, nd=True
    )
    want = torch.from_numpy(container.copy()).index_reduce_(
        1, torch.from_numpy(idx % 5), torch.from_numpy(updates), _EXTREMA[mode][0]
    )
    assert_close(got, want.numpy())


def test_scatter_along_axis_max_with_indices_narrower_than_the_container_is_refused() -> None:
    def add(b) -> None:
        b.add_scatter_along_axis("narrow", ["c", "idx", "u"], "y", axis=1, mode="MAX")

    spec = build_spec({"c": (1, 5, 4), "idx": (1, 2, 3), "u": (1, 2, 3)}, ["y"], add, nd=True)
    with pytest.raises(UnsupportedLayerError, match="'narrow'.*MAX/MIN.*smaller"):
        compile_network(spec)


@pytest.mark.parametrize("mode", sorted(_EXTREMA))
def test_scatter_nd_max_and_min_among_constants(mode: str) -> None:
    container = rng(26).standard_normal((4, 3, 2)).astype(np.float32)
    idx = np.array([[1, 2], [3, 0], [1, -1], [-3, 2]])  # [1, 2] three times
    updates = rng(27).standard_normal((4, 2)).astype(np.float32) * 2

    def add(b) -> None:
        _const(b, "c", container)
        _const(b, "idx", idx)
        _const(b, "u", updates)
        b.add_scatter_nd("s", ["c", "idx", "u"], "s_out", mode=mode)
        b.add_elementwise("y", ["s_out", "x"], "y", "ADD")  # meets a batched input

    x = _x(4, 3, 2, seed=28)
    got = run_one_layer(add, {"x": (1, 4, 3, 2)}, {"x": x}, nd=True)
    want = container.copy()
    _EXTREMA[mode][1].at(want, tuple((idx % np.array([4, 3])).T), updates)
    assert_close(got, want + x)


@pytest.mark.parametrize(
    ("mode", "reduce"),
    [("UPDATE", None), ("ADD", "sum"), ("MUL", "prod"), ("MAX", "amax"), ("MIN", "amin")],
)
def test_scatter_along_axis(mode: str, reduce) -> None:
    container, updates = _x(5, 4, seed=13), _x(3, 4, seed=14) * 2
    if reduce is None:  # unique per column: which of two writes wins is not defined
        idx = np.stack([rng(15).permutation(5)[:3] for _ in range(4)], axis=1)
        idx = np.broadcast_to(idx, (N, 3, 4)).copy()
    else:  # repeated within a column: every update counts
        idx = rng(25).integers(0, 5, size=(N, 3, 4))
    got = run_one_layer(
        lambda b: b.add_scatter_along_axis("s", ["c", "idx", "u"], "y", axis=1, mode=mode),
        {"c": (1, 5, 4), "idx": (1, 3, 4), "u": (1, 3, 4)},
        {"c": container, "idx": idx.astype(np.float32), "u": updates},
        nd=True,
    )
    c, i, u = (torch.from_numpy(a) for a in (container, idx, updates))
    want = c.scatter(1, i, u) if reduce is None else c.scatter_reduce(1, i, u, reduce)
    assert_close(got, want.numpy())


def test_scatter_nd_among_constants() -> None:
    container = rng(16).standard_normal((5, 4)).astype(np.float32)
    idx = np.array([[1], [3]])
    updates = rng(17).standard_normal((2, 4)).astype(np.float32)

    def add(b) -> None:
        _const(b, "c", container)
        _const(b, "idx", idx)
        _const(b, "u", updates)
        b.add_scatter_nd("s", ["c", "idx", "u"], "s_out", mode="ADD")
        b.add_elementwise("y", ["s_out", "x"], "y", "ADD")  # meets a batched input

    x = _x(5, 4, seed=18)
    got = run_one_layer(add, {"x": (1, 5, 4)}, {"x": x}, nd=True)
    want = container.copy()
    want[[1, 3]] += updates
    assert_close(got, want + x)
