"""ND comparisons and logical layers against torch (eq, ne, lt, le, gt, ge;
logical_and/or/xor/not), with broadcasting and the one-input ``alpha`` form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer

N = 3


def _ints(*shape: int, seed: int) -> np.ndarray:
    """Small integers as floats, so that equal values occur."""
    return rng(seed).integers(-2, 3, size=(N, *shape)).astype(np.float32)


_CASES = {
    "equal": (lambda b, ins, a: b.add_equal("c", ins, "y", alpha=a), torch.eq),
    "notEqual": (lambda b, ins, a: b.add_not_equal("c", ins, "y", alpha=a), torch.ne),
    "lessThan": (lambda b, ins, a: b.add_less_than("c", ins, "y", alpha=a), torch.lt),
    "lessEqual": (
        lambda b, ins, a: b.add_less_than("c", ins, "y", use_less_than_equal=True, alpha=a),
        torch.le,
    ),
    "greaterThan": (lambda b, ins, a: b.add_greater_than("c", ins, "y", alpha=a), torch.gt),
    "greaterEqual": (
        lambda b, ins, a: b.add_greater_than("c", ins, "y", use_greater_than_equal=True, alpha=a),
        torch.ge,
    ),
}


@pytest.mark.parametrize("kind", sorted(_CASES))
def test_comparison_broadcasts(kind: str) -> None:
    add, op = _CASES[kind]
    a, b = _ints(4, 5, seed=1), _ints(5, seed=2)
    got = run_one_layer(
        lambda bl: add(bl, ["a", "b"], 0.0),
        {"a": (1, 4, 5), "b": (1, 5)},
        {"a": a, "b": b},
        nd=True,
    )
    want = op(torch.from_numpy(a), torch.from_numpy(b)[:, None, :]).float().numpy()
    assert_close(got, want)


@pytest.mark.parametrize("kind", sorted(_CASES))
def test_comparison_with_alpha(kind: str) -> None:
    add, op = _CASES[kind]
    a = _ints(4, 5, seed=3)
    got = run_one_layer(lambda bl: add(bl, ["a"], 1.0), {"a": (1, 4, 5)}, {"a": a}, nd=True)
    assert_close(got, op(torch.from_numpy(a), 1.0).float().numpy())


_LOGICAL = {"AND": torch.logical_and, "OR": torch.logical_or, "XOR": torch.logical_xor}


@pytest.mark.parametrize("mode", sorted(_LOGICAL))
def test_logical(mode: str) -> None:
    a, b = _ints(4, 5, seed=4), _ints(4, 5, seed=5)
    got = run_one_layer(
        lambda bl: bl.add_logical("l", ["a", "b"], "y", mode),
        {"a": (1, 4, 5), "b": (1, 4, 5)},
        {"a": a, "b": b},
        nd=True,
    )
    assert_close(got, _LOGICAL[mode](torch.from_numpy(a), torch.from_numpy(b)).float().numpy())


def test_logical_not() -> None:
    a = _ints(4, 5, seed=6)
    got = run_one_layer(
        lambda bl: bl.add_logical("l", ["a"], "y", "NOT"), {"a": (1, 4, 5)}, {"a": a}, nd=True
    )
    assert_close(got, torch.logical_not(torch.from_numpy(a)).float().numpy())
