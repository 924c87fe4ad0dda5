"""Optimizers over autodiff leaves, with PyTorch's update formulas exactly.

SGD with momentum: ``v = μ·v + g; w -= lr·v``, the buffer starting as the first
gradient (``torch.optim.SGD``, no dampening, no Nesterov). Adam: bias-corrected
moments, ``eps`` added after the square root (``torch.optim.Adam``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .autodiff import DTYPE, Value


class Optimizer:
    """Holds the parameters and per-parameter state; subclasses implement ``_step``."""

    def __init__(self, params: Sequence[Value]) -> None:
        self.params = list(params)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for param, state in zip(self.params, self.state, strict=True):
            if param.grad is not None:
                self._step(param, param.grad, state)

    def _step(self, param: Value, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with (PyTorch-style) momentum."""

    def __init__(self, params: Sequence[Value], *, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params)
        self.lr = DTYPE(lr)
        self.momentum = DTYPE(momentum)

    def _step(self, param: Value, grad: np.ndarray, state: dict[str, Any]) -> None:
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.copy()
            else:
                buf = buf * self.momentum + grad
            state["momentum_buffer"] = buf
            grad = buf
        param.data = (param.data - self.lr * grad).astype(DTYPE, copy=False)


class Adam(Optimizer):
    """Adam (Kingma & Ba) as ``torch.optim.Adam`` computes it, without weight decay."""

    def __init__(
        self,
        params: Sequence[Value],
        *,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps

    def _step(self, param: Value, grad: np.ndarray, state: dict[str, Any]) -> None:
        t = state["step"] = state.get("step", 0) + 1
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        if m is None:
            m = np.zeros_like(param.data)
            v = np.zeros_like(param.data)
        b1, b2 = DTYPE(self.beta1), DTYPE(self.beta2)
        m = m * b1 + grad * (1 - b1)
        v = v * b2 + grad * grad * (1 - b2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        correction1 = 1 - self.beta1**t
        correction2 = 1 - self.beta2**t
        step_size = self.lr / correction1
        denom = np.sqrt(v) / DTYPE(np.sqrt(correction2)) + DTYPE(self.eps)
        param.data = (param.data - DTYPE(step_size) * (m / denom)).astype(DTYPE, copy=False)


def make_optimizer(name: str, params: Sequence[Value], values: dict[str, Any]) -> Optimizer:
    """The optimizer called ``name`` (``"sgd"`` or ``"adam"``) with resolved ``values``."""
    if name == "sgd":
        return SGD(params, lr=float(values["learning_rate"]), momentum=float(values["momentum"]))
    if name == "adam":
        return Adam(
            params,
            lr=float(values["learning_rate"]),
            beta1=float(values["beta1"]),
            beta2=float(values["beta2"]),
            eps=float(values["eps"]),
        )
    raise ValueError(f"unknown optimizer {name!r}")
