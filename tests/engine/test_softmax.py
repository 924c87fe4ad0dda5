"""softmax (classic, over channels) and softmaxND (any axis) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer


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
