"""concat (classic, along channels) and concatND (any axis) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from mlupdated.engine.compile import compile_network
from mlupdated.errors import InvalidModelError

from .helpers import assert_close, build_spec, rng, run_one_layer


def test_channel_concat_of_three() -> None:
    r = rng()
    shapes = {"a": (2, 3, 4), "b": (5, 3, 4), "c": (1, 3, 4)}
    feeds = {k: r.standard_normal((2, *s)).astype(np.float32) for k, s in shapes.items()}
    got = run_one_layer(
        lambda b: b.add_elementwise("cat", list(shapes), "y", "CONCAT"), shapes, feeds
    )
    assert_close(got, np.concatenate(list(feeds.values()), axis=1))


@pytest.mark.parametrize("axis", [1, 2, 3, -1, -3])
def test_concat_nd(axis: int) -> None:
    r = rng(1)
    base = [1, 3, 4, 5]
    shapes = {}
    for name, extra in (("a", 1), ("b", 2)):
        s = list(base)
        s[axis] += extra
        shapes[name] = tuple(s)
    feeds = {k: r.standard_normal((2, *s[1:])).astype(np.float32) for k, s in shapes.items()}
    got = run_one_layer(
        lambda b: b.add_concat_nd("cat", ["a", "b"], "y", axis=axis), shapes, feeds, nd=True
    )
    assert_close(got, np.concatenate([feeds["a"], feeds["b"]], axis=axis))


def test_inputs_of_different_rank_are_refused() -> None:
    spec = build_spec(
        {"a": (1, 3, 4), "b": (1, 3, 4, 1)},
        ["y"],
        lambda b: b.add_concat_nd("badcat", ["a", "b"], "y", axis=1),
        nd=True,
    )
    with pytest.raises(InvalidModelError, match="badcat"):
        compile_network(spec)
