"""``lrn`` against PyTorch's local_response_norm (odd windows, where both centre the
window) and a NumPy reference of the proto's formula (even windows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .helpers import assert_close, rng, run_one_layer


def _numpy_lrn(x: np.ndarray, alpha: float, beta: float, size: int, k: float) -> np.ndarray:
    # x / (k + alpha/size * sum over the window of x^2)^beta; window of channel c is
    # [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped to the channels.
    x = x.astype(np.float64)
    channels = x.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    out = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - before), min(channels - 1, c + after)
        total = np.sum(x[:, lo : hi + 1] ** 2, axis=1)
        out[:, c] = x[:, c] / (k + alpha / size * total) ** beta
    return out


@pytest.mark.parametrize(
    ("alpha", "beta", "size", "k"),
    [(1e-4, 0.75, 5, 1.0), (0.5, 0.5, 3, 2.0), (2.0, 1.0, 1, 1.5), (0.1, 0.75, 7, 1.0)],
)
def test_lrn_matches_torch(alpha: float, beta: float, size: int, k: float) -> None:
    x = rng(size).standard_normal((2, 6, 5, 4)).astype(np.float32)

    def add(builder):
        builder.add_lrn("l", "x", "y", alpha=alpha, beta=beta, local_size=size, k=k)

    y = run_one_layer(add, {"x": (6, 5, 4)}, {"x": x})
    t = torch.from_numpy(x).double()
    # torch also divides alpha by the window size.
    expected = F.local_response_norm(t, size, alpha=alpha, beta=beta, k=k).numpy()
    assert_close(y, expected)
    assert_close(y, _numpy_lrn(x, alpha, beta, size, k))


@pytest.mark.parametrize("size", [2, 4, 6])
def test_lrn_even_window_and_default_k(size: int) -> None:
    x = rng(size).standard_normal((2, 5, 3, 3)).astype(np.float32)

    def add(builder):
        layer = builder.add_lrn("l", "x", "y", alpha=0.8, beta=0.75, local_size=size)
        layer.lrn.k = 0.0  # unset: 1

    y = run_one_layer(add, {"x": (5, 3, 3)}, {"x": x})
    assert_close(y, _numpy_lrn(x, 0.8, 0.75, size, 1.0))


@pytest.mark.parametrize("size", [3, 4])
def test_lrn_on_a_rank_5_blob_folds_leading_axes_into_the_batch(size: int) -> None:
    x = rng(9).standard_normal((2, 3, 5, 4, 4)).astype(np.float32)

    def add(builder):
        builder.add_lrn("l", "x", "y", alpha=0.5, beta=0.75, local_size=size, k=2.0)

    y = run_one_layer(add, {"x": (1, 3, 5, 4, 4)}, {"x": x}, nd=True)
    expected = _numpy_lrn(x.reshape(6, 5, 4, 4), 0.5, 0.75, size, 2.0).reshape(x.shape)
    assert_close(y, expected)


def test_a_zero_window_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        layer = builder.add_lrn("l", "x", "y", alpha=1.0, beta=0.5, local_size=3)
        layer.lrn.localSize = 0

    with pytest.raises(InvalidModelError, match="'l'.*localSize"):
        run_one_layer(add, {"x": (2, 3, 3)}, {"x": np.ones((1, 2, 3, 3), np.float32)})
