"""Dense and element-wise layer ops for the trainable suffix (Core ML semantics).

Blobs follow the engine's layout: ``[N, C, H, W]`` for classic layers, vectors as
``[N, C, 1, 1]``; ``inner_product`` also takes ``[N, C]``. Convolution and pooling
live in ``ops_spatial``.
"""

from __future__ import annotations

import numpy as np

from ..coreml.rules import BACKPROP_ACTIVATIONS
from .autodiff import DTYPE, Value, make

ACTIVATIONS = BACKPROP_ACTIVATIONS


def inner_product(x: Value, weight: Value, bias: Value | None) -> Value:
    """``y = x Wᵀ + b`` with ``weight`` ``[Cout, Cin]``; keeps ``[N, C, 1, 1]`` vectors 4-D."""
    n = x.shape[0]
    c_out, c_in = weight.shape
    x2 = x.data.reshape(n, -1)
    if x2.shape[1] != c_in:
        raise ValueError(f"input has {x2.shape[1]} values per example, the layer takes {c_in}")
    y = x2 @ weight.data.T
    if bias is not None:
        y = y + bias.data
    out_shape = (n, c_out, 1, 1) if x.data.ndim == 4 else (n, c_out)

    def backward(g: np.ndarray) -> None:
        g2 = g.reshape(n, c_out)
        weight.accumulate(g2.T @ x2)
        if bias is not None:
            bias.accumulate(g2.sum(axis=0))
        x.accumulate((g2 @ weight.data).reshape(x.shape))

    parents = [x, weight] + ([bias] if bias is not None else [])
    return make(
        y.reshape(out_shape).astype(DTYPE, copy=False), parents, backward, op="innerProduct"
    )


def flatten(x: Value, *, channel_last: bool = False) -> Value:
    """``[N, C, H, W]`` → ``[N, C·H·W, 1, 1]``; ``channel_last`` orders values as H, W, C."""
    n, c, h, w = x.shape
    source = x.data.transpose(0, 2, 3, 1) if channel_last else x.data
    y = np.ascontiguousarray(source).reshape(n, c * h * w, 1, 1)

    def backward(g: np.ndarray) -> None:
        if channel_last:
            x.accumulate(g.reshape(n, h, w, c).transpose(0, 3, 1, 2))
        else:
            x.accumulate(g.reshape(n, c, h, w))

    return make(y, [x], backward, op="flatten")


def batchnorm_frozen(
    x: Value,
    *,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
) -> Value:
    """Batch normalisation with the stored statistics (what Core ML trains through)."""
    shape = (1, -1, 1, 1) if x.data.ndim == 4 else (1, -1)
    scale = np.asarray(gamma, DTYPE) / np.sqrt(np.asarray(variance, DTYPE) + DTYPE(epsilon))
    scale = scale.reshape(shape)
    shift = np.asarray(beta, DTYPE).reshape(shape) - np.asarray(mean, DTYPE).reshape(shape) * scale
    y = x.data * scale + shift

    def backward(g: np.ndarray) -> None:
        x.accumulate(g * scale)

    return make(y.astype(DTYPE, copy=False), [x], backward, op="batchnorm")


def activation(x: Value, kind: str) -> Value:
    """``ReLU``, ``sigmoid`` or ``tanh``."""
    if kind == "ReLU":
        mask = x.data > 0
        y = np.where(mask, x.data, DTYPE(0))

        def local(g: np.ndarray) -> np.ndarray:
            return g * mask

    elif kind == "sigmoid":
        # Split by sign so exp never overflows.
        e = np.exp(-np.abs(x.data))
        y = np.where(x.data >= 0, 1 / (1 + e), e / (1 + e))

        def local(g: np.ndarray) -> np.ndarray:
            return g * y * (1 - y)

    elif kind == "tanh":
        y = np.tanh(x.data)

        def local(g: np.ndarray) -> np.ndarray:
            return g * (1 - y * y)

    else:
        raise ValueError(f"activation {kind!r} is not trainable (supported: {ACTIVATIONS})")

    def backward(g: np.ndarray) -> None:
        x.accumulate(local(g))

    return make(np.asarray(y, dtype=DTYPE), [x], backward, op=kind)


def log_softmax_array(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically safe log-softmax of an array along ``axis``."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x: Value, *, axis: int = 1) -> Value:
    """Softmax over the channel axis; losses may read its ``parents[0]`` (the logits)."""
    y = np.exp(log_softmax_array(x.data, axis=axis)).astype(DTYPE)

    def backward(g: np.ndarray) -> None:
        x.accumulate(y * (g - (g * y).sum(axis=axis, keepdims=True)))

    return make(y, [x], backward, op="softmax")
