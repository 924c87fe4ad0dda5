"""concat (classic, along channels) and concatND (any axis) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.errors import InvalidModelError

from .helpers import assert_close, build_spec, rng, run_one_layer, run_spec
from .torch_convert import convert_module, layer_types


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


@pytest.mark.parametrize("axis", [1, -1])
def test_concat_nd_with_a_constant_gives_each_example_the_constant(axis: int) -> None:
    """A loadConstantND has a batch of one; concatenated with a batch of N examples it
    is repeated for each (Core ML runs the network once per example)."""
    const = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    if axis == -1:
        const = const.reshape(1, 3, 2)

    def add(b):
        b.add_load_constant_nd("c", "k", constant_value=const, shape=const.shape)
        b.add_concat_nd("cat", ["x", "k"], "y", axis=axis)

    x = rng(3).standard_normal((3, 3, 3)).astype(np.float32)
    got = run_one_layer(add, {"x": (1, 3, 3)}, {"x": x}, nd=True)
    expected = np.concatenate([x, np.repeat(const, 3, axis=0)], axis=axis)
    assert_close(got, expected)


def test_classic_concat_with_a_constant() -> None:
    const = np.full((2, 4, 4), 0.5, dtype=np.float32)

    def add(b):
        b.add_load_constant("c", "k", constant_value=const, shape=const.shape)
        b.add_elementwise("cat", ["x", "k"], "y", "CONCAT")

    x = rng(4).standard_normal((3, 3, 4, 4)).astype(np.float32)
    got = run_one_layer(add, {"x": (3, 4, 4)}, {"x": x})
    assert_close(got, np.concatenate([x, np.repeat(const[None], 3, axis=0)], axis=1))


def test_concat_nd_along_the_batch_axis_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    spec = build_spec(
        {"a": (1, 3), "b": (1, 3)},
        ["y"],
        lambda b: b.add_concat_nd("batchcat", ["a", "b"], "y", axis=0),
        nd=True,
    )
    with pytest.raises(UnsupportedLayerError, match="batchcat"):
        compile_network(spec)


class _ClassToken(torch.nn.Module):
    """A learned token in front of a sequence (as vision transformers do)."""

    def __init__(self) -> None:
        super().__init__()
        self.token = torch.nn.Parameter(
            torch.randn(1, 1, 4, generator=torch.Generator().manual_seed(0))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.token, x], dim=1)
        return torch.softmax(h, dim=-1) * h.mean(dim=1, keepdim=True)


def test_concat_with_a_constant_as_coremltools_converts_it() -> None:
    module = _ClassToken().eval()
    spec = convert_module(module, (1, 3, 4))
    assert {"loadConstantND", "concatND"} <= layer_types(spec)
    x = rng(5).standard_normal((3, 3, 4)).astype(np.float32)
    (got,) = run_spec(spec, {"x": x}).values()
    with torch.no_grad():
        expected = np.concatenate(
            [module(torch.from_numpy(x[i : i + 1])).numpy() for i in range(3)]
        )
    assert_close(got, expected)
