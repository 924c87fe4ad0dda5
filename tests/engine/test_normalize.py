"""``mvn`` and ``layerNormalization`` against torch's instance_norm / layer_norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .helpers import assert_close, rng, run_one_layer

N = 3


def _x(*shape: int, seed: int) -> np.ndarray:
    return (2 + 3 * rng(seed).standard_normal((N, *shape))).astype(np.float32)


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("normalize_variance", [False, True])
def test_mvn(across: bool, normalize_variance: bool) -> None:
    x = _x(4, 5, 6, seed=1)
    got = run_one_layer(
        lambda b: b.add_mvn("m", "x", "y", across, normalize_variance, epsilon=1e-5),
        {"x": (4, 5, 6)},
        {"x": x},
    )
    t = torch.from_numpy(x)
    if normalize_variance:
        want = F.layer_norm(t, t.shape[1:], eps=1e-5) if across else F.instance_norm(t, eps=1e-5)
    else:
        dims = (1, 2, 3) if across else (2, 3)
        want = t - t.mean(dim=dims, keepdim=True)
    assert_close(got, want.numpy())


@pytest.mark.parametrize(
    ("shape", "normalized"), [((1, 7), (7,)), ((1, 4, 5, 6), (5, 6)), ((1, 4, 5, 6), (4, 5, 6))]
)
def test_layer_normalization(shape, normalized) -> None:
    x = _x(*shape[1:], seed=2)
    gamma = rng(3).standard_normal(normalized).astype(np.float32)
    beta = rng(4).standard_normal(normalized).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_layer_normalization(
            "ln", "x", "y", list(normalized), gamma, beta, eps=1e-4
        ),
        {"x": shape},
        {"x": x},
        nd=True,
    )
    want = F.layer_norm(
        torch.from_numpy(x), normalized, torch.from_numpy(gamma), torch.from_numpy(beta), eps=1e-4
    )
    assert_close(got, want.numpy())
