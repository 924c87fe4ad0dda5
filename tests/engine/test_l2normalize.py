"""``l2normalize`` against the proto's formula, ``x / sqrt(sum x^2 + eps)`` over C·H·W."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_one_layer


def _reference(x: np.ndarray, eps: float) -> np.ndarray:
    t = torch.from_numpy(x).double()
    norm = torch.sqrt(t.pow(2).sum(dim=(-3, -2, -1), keepdim=True) + eps)
    return (t / norm).numpy()


@pytest.mark.parametrize("shape", [(3, 4, 5), (8, 1, 1), (1, 6, 2)])
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_l2normalize_divides_each_example_by_its_norm(shape, eps: float) -> None:
    x = rng(1).standard_normal((3, *shape)).astype(np.float32)

    def add(builder):
        builder.add_l2_normalize("n", "x", "y", epsilon=eps)

    y = run_one_layer(add, {"x": shape}, {"x": x})
    assert_close(y, _reference(x, eps))


def test_epsilon_inside_the_root_and_zero_means_default() -> None:
    # Tiny inputs make the epsilon visible: the default 1e-6 must be used when unset.
    x = (rng(2).standard_normal((2, 2, 3, 3)) * 1e-4).astype(np.float32)

    def add(builder):
        layer = builder.add_l2_normalize("n", "x", "y")
        layer.l2normalize.epsilon = 0.0

    y = run_one_layer(add, {"x": (2, 3, 3)}, {"x": x})
    assert_close(y, _reference(x, 1e-6), atol=1e-5)
    assert np.max(np.abs(y - _reference(x, 1e-5))) > 1e-3


def test_an_input_without_c_h_w_axes_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        builder.add_l2_normalize("n", "x", "y")

    with pytest.raises(InvalidModelError, match="'n'.*rank"):
        run_one_layer(add, {"x": (1, 6)}, {"x": np.ones((1, 6), np.float32)}, nd=True)
