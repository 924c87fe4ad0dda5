"""ND ``clip`` and ``clampedReLU`` against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer


@pytest.mark.parametrize(
    ("low", "high"), [(0.0, 1.0), (-0.5, 0.25), (-2.0, 6.0), (0.3, 0.3), (1.0, -1.0)]
)
@pytest.mark.parametrize("nd", [False, True])
def test_clip_matches_the_proto_formula(low: float, high: float, nd: bool) -> None:
    x = rng(1).standard_normal((3, 2, 5, 4)).astype(np.float32) * 2

    def add(builder):
        builder.add_clip("c", "x", "y", min_value=low, max_value=high)

    shape = (1, 2, 5, 4) if nd else (2, 5, 4)
    y = run_one_layer(add, {"x": shape}, {"x": x}, nd=nd)
    # min(max(x, minVal), maxVal): maxVal wins when the bounds cross, as in torch.
    expected = torch.clamp(torch.from_numpy(x), min=low, max=high).numpy()
    assert_close(y, expected)
    assert_close(y, np.minimum(np.maximum(x, np.float32(low)), np.float32(high)))


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 6.0), (0.1, 1.5), (-0.5, 0.5), (2.0, 10.0)])
def test_clamped_relu_matches_the_proto_formula(alpha: float, beta: float) -> None:
    x = rng(2).standard_normal((2, 3, 6)).astype(np.float32) * 3
    x[0, 0, :3] = [0.0, -0.0, beta]

    def add(builder):
        builder.add_clamped_relu("c", "x", "y", alpha=alpha, beta=beta)

    y = run_one_layer(add, {"x": (1, 3, 6)}, {"x": x}, nd=True)
    t = torch.from_numpy(x).double()
    expected = torch.minimum(torch.where(t >= 0, t, alpha * t), torch.tensor(beta)).numpy()
    assert_close(y, expected)
