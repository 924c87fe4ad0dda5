"""The activation family against PyTorch: every ActivationParams kind, GELU's three
modes, and the activations coremltools emits for torch modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from .helpers import assert_close, rng, run_one_layer, run_spec
from .torch_convert import convert_module

SHAPE = (4, 5, 6)
ALPHA = np.array([0.1, -0.5, 0.8, 1.5], dtype=np.float32)
BETA = np.array([1.0, 0.5, 2.0, -1.0], dtype=np.float32)


def _ch(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(v).view(1, -1, 1, 1)


CASES = {
    "RELU": (None, F.relu),
    "LEAKYRELU": ([0.3], lambda x: F.leaky_relu(x, 0.3)),
    "PRELU": (ALPHA, lambda x: F.prelu(x, torch.from_numpy(ALPHA))),
    "ELU": (1.3, lambda x: F.elu(x, 1.3)),
    "SIGMOID": (None, torch.sigmoid),
    "TANH": (None, torch.tanh),
    "SIGMOID_HARD": ([0.3, 0.4], lambda x: torch.clamp(0.3 * x + 0.4, 0, 1)),
    "SCALED_TANH": ([1.7, 0.6], lambda x: 1.7 * torch.tanh(0.6 * x)),
    "LINEAR": ([2.5, -0.75], lambda x: 2.5 * x - 0.75),
    "SOFTPLUS": (None, F.softplus),
    "PARAMETRICSOFTPLUS": (
        [ALPHA, BETA],
        lambda x: _ch(ALPHA) * torch.log1p(torch.exp(_ch(BETA) * x)),
    ),
    "SOFTSIGN": (None, F.softsign),
    "THRESHOLDEDRELU": (0.4, lambda x: F.threshold(x, 0.4, 0.0)),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_activation_matches_torch(kind: str) -> None:
    params, reference = CASES[kind]
    x = (rng(1).standard_normal((3, *SHAPE)) * 2).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_activation("act", kind, "x", "y", params=params), {"x": SHAPE}, {"x": x}
    )
    assert_close(got, reference(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("EXACT", lambda x: F.gelu(x)),
        ("TANH_APPROXIMATION", lambda x: F.gelu(x, approximate="tanh")),
        ("SIGMOID_APPROXIMATION", lambda x: x * torch.sigmoid(1.702 * x)),
    ],
)
def test_gelu_modes(mode: str, reference) -> None:
    x = (rng(2).standard_normal((2, 1, 7)) * 3).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_gelu("gelu", "x", "y", mode=mode), {"x": (1, 7)}, {"x": x[:, 0]}, nd=True
    )
    assert_close(got, reference(torch.from_numpy(x[:, 0])).numpy())


class TorchActivations(torch.nn.Module):
    """Every activation a MobileNet/EfficientNet-style network uses, side by side."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [
            F.relu6(x),
            F.hardswish(x),
            F.hardsigmoid(x),
            F.silu(x),
            F.gelu(x),
            F.elu(x),
            F.leaky_relu(x, 0.2),
            F.softplus(x),
            torch.sigmoid(x),
            torch.tanh(x),
            F.selu(x),
        ]
        return torch.cat(parts, dim=1)


def test_activations_coremltools_emits_for_torch() -> None:
    module = TorchActivations()
    spec = convert_module(module, (1, 3, 8, 8))
    x = (rng(3).standard_normal((2, 3, 8, 8)) * 4).astype(np.float32)
    out = spec.description.output[0].name
    got = run_spec(spec, {"x": x})[out]
    with torch.no_grad():
        assert_close(got, module(torch.from_numpy(x)).numpy())
