"""Element-wise arithmetic against NumPy: classic add/multiply/average/max/min (N
inputs, alpha with one input, channel broadcasting) and the ND broadcastable ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer, run_spec
from .torch_convert import convert_module, layer_types

SHAPE = (3, 4, 5)


def _inputs(count: int, shapes=None, seed: int = 0) -> tuple[dict, dict]:
    r = rng(seed)
    shapes = shapes or [SHAPE] * count
    names = [f"x{i}" for i in range(count)]
    feeds = {
        n: r.standard_normal((2, *s)).astype(np.float32) for n, s in zip(names, shapes, strict=True)
    }
    return dict(zip(names, shapes, strict=True)), feeds


REFERENCES = {
    "ADD": lambda xs: sum(xs),
    "MULTIPLY": lambda xs: np.prod(np.stack(xs), axis=0),
    "AVE": lambda xs: sum(xs) / len(xs),
    "MAX": lambda xs: np.max(np.stack(xs), axis=0),
    "MIN": lambda xs: np.min(np.stack(xs), axis=0),
}


@pytest.mark.parametrize("mode", sorted(REFERENCES))
@pytest.mark.parametrize("count", [2, 3])
def test_classic_elementwise(mode: str, count: int) -> None:
    shapes, feeds = _inputs(count, seed=count)
    got = run_one_layer(lambda b: b.add_elementwise("op", list(shapes), "y", mode), shapes, feeds)
    assert_close(got, REFERENCES[mode](list(feeds.values())))


@pytest.mark.parametrize(("mode", "op"), [("ADD", np.add), ("MULTIPLY", np.multiply)])
def test_single_input_uses_alpha(mode: str, op) -> None:
    shapes, feeds = _inputs(1)
    got = run_one_layer(
        lambda b: b.add_elementwise("op", ["x0"], "y", mode, alpha=-1.75), shapes, feeds
    )
    assert_close(got, op(feeds["x0"], np.float32(-1.75)))


def test_classic_add_broadcasts_a_per_channel_blob() -> None:
    shapes, feeds = _inputs(2, shapes=[SHAPE, (3, 1, 1)])
    got = run_one_layer(lambda b: b.add_elementwise("op", ["x0", "x1"], "y", "ADD"), shapes, feeds)
    assert_close(got, feeds["x0"] + feeds["x1"])


ND_CASES = {
    "add_add_broadcastable": np.add,
    "add_subtract_broadcastable": np.subtract,
    "add_multiply_broadcastable": np.multiply,
    "add_divide_broadcastable": np.divide,
    "add_max_broadcastable": np.maximum,
    "add_min_broadcastable": np.minimum,
}


@pytest.mark.parametrize("method", sorted(ND_CASES))
@pytest.mark.parametrize(
    "shapes", [[(1, 3, 4), (1, 3, 4)], [(1, 3, 4), (1, 1, 4)], [(1, 2, 3, 4), (1, 3, 1)]]
)
def test_broadcastable(method: str, shapes) -> None:
    r = rng(5)
    feeds = {
        "a": r.standard_normal((2, *shapes[0][1:])).astype(np.float32),
        "b": (
            r.uniform(0.5, 2.0, (2 if len(shapes[1]) == len(shapes[0]) else 1, *shapes[1][1:]))
        ).astype(np.float32),
    }
    # A lower-rank second operand is fed with its own leading 1 (it is not batched).
    if len(shapes[1]) != len(shapes[0]):
        feeds["b"] = feeds["b"][0:1]
    got = run_one_layer(
        lambda b: getattr(b, method)("op", ["a", "b"], "y"),
        {"a": shapes[0], "b": shapes[1]},
        feeds,
        nd=True,
    )
    assert_close(got, ND_CASES[method](feeds["a"], feeds["b"]), atol=1e-4)


@pytest.mark.parametrize("method", sorted(ND_CASES))
def test_broadcastable_lower_rank_operand_keeps_its_batch(method: str) -> None:
    """A lower-rank operand that carries the batch meets the other per example: its
    batch axis must not slide onto a data axis (batch 3 == H 3 would hide it)."""
    r = rng(6)
    a = r.standard_normal((3, 2, 3, 4)).astype(np.float32)
    b = r.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    got = run_one_layer(
        lambda builder: getattr(builder, method)("op", ["a", "b"], "y"),
        {"a": (1, 2, 3, 4), "b": (1, 4)},
        {"a": a, "b": b},
        nd=True,
    )
    expected = np.concatenate([ND_CASES[method](a[i : i + 1], b[i : i + 1]) for i in range(3)])
    assert_close(got, expected, atol=1e-4)


@pytest.mark.parametrize("swap", [False, True])
def test_broadcastable_lower_rank_first_operand(swap: bool) -> None:
    r = rng(7)
    a = r.standard_normal((2, 5, 2, 3)).astype(np.float32)
    b = r.standard_normal((2, 3)).astype(np.float32)
    inputs = {"a": (1, 5, 2, 3), "b": (1, 3)}
    order = ["b", "a"] if swap else ["a", "b"]
    got = run_one_layer(
        lambda builder: builder.add_subtract_broadcastable("op", order, "y"),
        inputs,
        {"a": a, "b": b},
        nd=True,
    )
    pairs = [(a[i : i + 1], b[i : i + 1]) for i in range(2)]
    expected = np.concatenate([(y - x) if swap else (x - y) for x, y in pairs])
    assert_close(got, expected)


class _ScaleByColumnMean(torch.nn.Module):
    """``x * y`` with ``y = x.mean((1, 2))``: a rank-2 ``[N, W]`` operand against a
    rank-4 ``[N, C, H, W]`` one, as coremltools converts it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.mean(dim=(1, 2)) + x.amax(dim=(1, 2))


def test_broadcastable_lower_rank_operand_from_pytorch() -> None:
    module = _ScaleByColumnMean()
    spec = convert_module(module, (1, 2, 3, 4))
    kinds = layer_types(spec)
    assert {"multiplyBroadcastable", "addBroadcastable"} <= kinds, kinds
    x = rng(8).standard_normal((3, 2, 3, 4)).astype(np.float32)
    (got,) = run_spec(spec, {"x": x}).values()
    with torch.no_grad():
        expected = np.concatenate(
            [module(torch.from_numpy(x[i : i + 1])).numpy() for i in range(3)]
        )
    assert_close(got, expected)
