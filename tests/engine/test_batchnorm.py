"""batchnorm against PyTorch: inference statistics, instance normalization, and
statistics computed from the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.errors import UnsupportedLayerError
from torch.nn import functional as F

from .helpers import assert_close, build_spec, rng, run_one_layer

C, H, W = 4, 5, 6


def _params(seed: int = 0):
    r = rng(seed)
    gamma = r.uniform(0.5, 1.5, C).astype(np.float32)
    beta = r.standard_normal(C).astype(np.float32)
    mean = r.standard_normal(C).astype(np.float32)
    var = r.uniform(0.5, 2.0, C).astype(np.float32)
    return gamma, beta, mean, var


def _x(batch: int = 3) -> np.ndarray:
    return (rng(9).standard_normal((batch, C, H, W)) * 2 + 1).astype(np.float32)


def test_inference_statistics() -> None:
    gamma, beta, mean, var = _params()
    x = _x()
    got = run_one_layer(
        lambda b: b.add_batchnorm("bn", C, gamma, beta, mean, var, "x", "y", epsilon=1e-3),
        {"x": (C, H, W)},
        {"x": x},
    )
    t = [torch.from_numpy(v) for v in (mean, var, gamma, beta)]
    expected = F.batch_norm(torch.from_numpy(x), t[0], t[1], t[2], t[3], eps=1e-3)
    assert_close(got, expected.numpy())


def test_inference_statistics_on_a_vector() -> None:
    gamma, beta, mean, var = _params(1)
    x = rng(2).standard_normal((5, C)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_batchnorm("bn", C, gamma, beta, mean, var, "x", "y"),
        {"x": (C,)},
        {"x": x},
    )
    expected = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    assert_close(got, expected.reshape(5, C, 1, 1))


def test_instance_normalization() -> None:
    gamma, beta, _, _ = _params(3)
    x = _x()
    got = run_one_layer(
        lambda b: b.add_batchnorm(
            "bn",
            C,
            gamma,
            beta,
            None,
            None,
            "x",
            "y",
            compute_mean_var=True,
            instance_normalization=True,
            epsilon=1e-4,
        ),
        {"x": (C, H, W)},
        {"x": x},
    )
    expected = F.instance_norm(
        torch.from_numpy(x), weight=torch.from_numpy(gamma), bias=torch.from_numpy(beta), eps=1e-4
    )
    assert_close(got, expected.numpy())


def test_batch_statistics_without_instance_norm_are_refused() -> None:
    gamma, beta, mean, var = _params(4)
    spec = build_spec(
        {"x": (C, H, W)},
        ["y"],
        lambda b: b.add_batchnorm("bn", C, gamma, beta, mean, var, "x", "y"),
    )
    spec.neuralNetwork.layers[0].batchnorm.computeMeanVar = True
    with pytest.raises(UnsupportedLayerError, match="'bn'.*computeMeanVar"):
        compile_network(spec)
