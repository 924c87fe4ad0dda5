"""Classic ``unary`` (with shift/scale/epsilon) and the ND elementwise layers against
PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer

_DEFAULT_EPS = 1e-6


def _classic(mode: str, t: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    return {
        "sqrt": lambda: torch.sqrt(t),
        "rsqrt": lambda: 1.0 / torch.sqrt(t + eps),
        "inverse": lambda: 1.0 / (t + eps),
        "power": lambda: torch.pow(t, alpha),
        "exp": lambda: torch.exp(t),
        "log": lambda: torch.log(t),
        "abs": lambda: torch.abs(t),
        "threshold": lambda: torch.clamp(t, min=alpha),
    }[mode]()


@pytest.mark.parametrize(
    "mode", ["sqrt", "rsqrt", "inverse", "power", "exp", "log", "abs", "threshold"]
)
@pytest.mark.parametrize(
    ("scale", "shift", "alpha", "eps"),
    [(1.0, 0.0, 1.0, 1e-4), (2.0, 0.5, 3.0, 1e-3), (0.5, 1.0, 0.5, 1e-6)],
)
def test_classic_unary_applies_f_to_scale_x_plus_shift(
    mode: str, scale: float, shift: float, alpha: float, eps: float
) -> None:
    g = rng(4)
    # Positive inputs keep sqrt/log/power defined; abs and threshold also get negatives.
    if mode in ("abs", "threshold"):
        x = g.standard_normal((2, 3, 4, 5)).astype(np.float32) * 2
    else:
        x = g.uniform(0.2, 2.0, size=(2, 3, 4, 5)).astype(np.float32)

    def add(builder):
        builder.add_unary(
            "u", "x", "y", mode=mode, alpha=alpha, shift=shift, scale=scale, epsilon=eps
        )

    y = run_one_layer(add, {"x": (3, 4, 5)}, {"x": x})
    t = torch.from_numpy(x).double() * scale + shift
    assert_close(y, _classic(mode, t, alpha, eps).numpy())


@pytest.mark.parametrize("mode", ["rsqrt", "inverse"])
def test_unset_epsilon_and_scale_take_the_proto_defaults(mode: str) -> None:
    x = rng(5).uniform(0.01, 0.05, size=(2, 2, 3, 3)).astype(np.float32)

    def add(builder):
        layer = builder.add_unary("u", "x", "y", mode=mode)
        layer.unary.epsilon = 0.0  # unset: 1e-6
        layer.unary.scale = 0.0  # unset: 1

    y = run_one_layer(add, {"x": (2, 3, 3)}, {"x": x})
    t = torch.from_numpy(x).double()
    assert_close(y, _classic(mode, t, 1.0, _DEFAULT_EPS).numpy())


_ND = {
    "exp2": torch.exp2,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "round": torch.round,
    "sign": torch.sign,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "asinh": torch.asinh,
    "acosh": torch.acosh,
    "atanh": torch.atanh,
    "erf": torch.erf,
}


def _nd_input(op: str) -> np.ndarray:
    g = rng(6)
    if op in ("asin", "acos", "atanh"):
        return g.uniform(-0.9, 0.9, size=(3, 4, 5)).astype(np.float32)
    if op == "acosh":
        return g.uniform(1.1, 4.0, size=(3, 4, 5)).astype(np.float32)
    if op == "tan":
        return g.uniform(-1.2, 1.2, size=(3, 4, 5)).astype(np.float32)
    x = (g.standard_normal((3, 4, 5)) * 3).astype(np.float32)
    if op in ("round", "floor", "ceil", "sign"):
        # Halves (round: to even, as torch does), integers and zero.
        x[0, 0, :] = [0.5, 1.5, -2.5, 0.0, 3.0]
    return x


@pytest.mark.parametrize("op", list(_ND))
def test_nd_elementwise_matches_torch(op: str) -> None:
    x = _nd_input(op)

    def add(builder):
        getattr(builder, f"add_{op}")("u", "x", "y")

    y = run_one_layer(add, {"x": (1, 4, 5)}, {"x": x}, nd=True)
    assert_close(y, _ND[op](torch.from_numpy(x).double()).numpy())
