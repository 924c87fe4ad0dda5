"""A small reverse-mode autodiff over NumPy float32 arrays, with whole layers as ops.

The shape is micrograd's: a :class:`Value` holds an array, the values it was computed
from, and a closure that, given the value's own gradient, *adds* into its parents'
gradients. :meth:`Value.backward` orders the graph topologically and walks it in
reverse. Layer ops (``train.ops``) and losses (``train.losses``) are the only
producers; they build their output with :func:`make`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DTYPE = np.float32


class Value:
    """An array in the graph, with its gradient once :meth:`backward` has run.

    ``requires_grad`` marks a leaf we want the gradient of (a trainable weight); inner
    values need a gradient when any parent does. ``op`` names the producing op (a
    loss may look through a softmax to its logits).
    """

    __slots__ = ("data", "grad", "requires_grad", "parents", "op", "name", "_backward")

    def __init__(
        self,
        data: np.ndarray,
        *,
        requires_grad: bool = False,
        name: str | None = None,
    ) -> None:
        self.data = np.asarray(data, dtype=DTYPE)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self.parents: tuple[Value, ...] = ()
        self.op: str | None = None
        self.name = name
        self._backward: Callable[[np.ndarray], None] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the value."""
        return self.data.shape

    def accumulate(self, grad: np.ndarray) -> None:
        """Add ``grad`` into this value's gradient (ops call this on their parents)."""
        if not self.requires_grad:
            return
        grad = np.asarray(grad, dtype=DTYPE)
        if grad.shape != self.data.shape:
            grad = grad.reshape(self.data.shape)
        if self.grad is None:
            self.grad = grad.copy()
        else:
            self.grad += grad

    def zero_grad(self) -> None:
        """Forget the gradient (before the next backward pass)."""
        self.grad = None

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Back-propagate from this value (a scalar loss unless ``grad`` is given)."""
        order = topological_order(self)
        self.grad = None
        self.requires_grad = True
        self.accumulate(np.ones_like(self.data) if grad is None else grad)
        for value in reversed(order):
            if value._backward is not None and value.grad is not None:
                value._backward(value.grad)

    def __repr__(self) -> str:
        return f"Value({self.name or self.op or 'leaf'}, shape={self.data.shape})"


def make(
    data: np.ndarray,
    parents: Sequence[Value],
    backward: Callable[[np.ndarray], None],
    *,
    op: str,
) -> Value:
    """The output of op ``op``: ``backward(grad)`` adds into ``parents``' gradients."""
    out = Value(data)
    out.parents = tuple(parents)
    out.op = op
    out.requires_grad = any(p.requires_grad for p in parents)
    # A constant sub-graph needs no backward step at all.
    out._backward = backward if out.requires_grad else None
    return out


def topological_order(root: Value) -> list[Value]:
    """Every value ``root`` depends on, each after its parents (iterative DFS)."""
    order: list[Value] = []
    seen: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        value, expanded = stack.pop()
        if expanded:
            order.append(value)
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        stack.append((value, True))
        for parent in value.parents:
            if id(parent) not in seen:
                stack.append((parent, False))
    return order
