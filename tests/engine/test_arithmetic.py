"""Element-wise arithmetic against NumPy: classic add/multiply/average/max/min (N
inputs, alpha with one input, channel broadcasting) and the ND broadcastable ops."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, rng, run_one_layer

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
