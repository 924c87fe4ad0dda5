"""softmax (classic, over channels) and softmaxND (any axis) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer, run_spec


def test_classic_softmax_over_channels() -> None:
    x = (rng().standard_normal((3, 6, 2, 5)) * 4).astype(np.float32)
    got = run_one_layer(lambda b: b.add_softmax("sm", "x", "y"), {"x": (6, 2, 5)}, {"x": x})
    assert_close(got, torch.softmax(torch.from_numpy(x), 1).numpy())


def test_classic_softmax_on_a_vector() -> None:
    x = (rng(1).standard_normal((4, 7)) * 4).astype(np.float32)
    got = run_one_layer(lambda b: b.add_softmax("sm", "x", "y"), {"x": (7,)}, {"x": x})
    assert_close(got, torch.softmax(torch.from_numpy(x), 1).numpy().reshape(4, 7, 1, 1))


@pytest.mark.parametrize("axis", [-1, -2, 1, 2])
def test_softmax_nd(axis: int) -> None:
    x = (rng(2).standard_normal((3, 4, 5)) * 3).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_softmax_nd("sm", "x", "y", axis=axis), {"x": (1, 4, 5)}, {"x": x}, nd=True
    )
    assert_close(got, torch.softmax(torch.from_numpy(x), axis).numpy())


@pytest.mark.parametrize(("shape", "axis"), [((1, 4, 5), 0), ((1, 4, 5), -3), ((1,), -1)])
def test_softmax_nd_over_the_batch_axis_stays_per_example(shape, axis: int) -> None:
    """Core ML sees the batch axis as size 1 in each run: a softmax over it is 1."""
    x = (rng(3).standard_normal((3, *shape[1:])) * 3).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_softmax_nd("sm", "x", "y", axis=axis), {"x": shape}, {"x": x}, nd=True
    )
    per_example = np.concatenate(
        [torch.softmax(torch.from_numpy(x[i : i + 1]), axis).numpy() for i in range(3)]
    )
    assert_close(got, per_example)


class _SoftmaxOverFirstAxis(torch.nn.Module):
    """``softmax(dim=-3)``: coremltools writes the classic softmax layer for it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-3) * x


@pytest.mark.parametrize("shape", [(1, 3, 4), (1, 2, 3, 4)])
def test_classic_softmax_on_an_nd_blob_uses_axis_minus_3(shape) -> None:
    """On a rank-3 blob axis -3 is each example's batch axis of one: the result is 1."""
    from .torch_convert import convert_module, layer_types

    module = _SoftmaxOverFirstAxis()
    spec = convert_module(module, shape)
    assert "softmax" in layer_types(spec)
    x = rng(4).standard_normal((3, *shape[1:])).astype(np.float32)
    (got,) = run_spec(spec, {"x": x}).values()
    with torch.no_grad():
        expected = np.concatenate(
            [module(torch.from_numpy(x[i : i + 1])).numpy() for i in range(3)]
        )
    assert_close(got, expected)
