"""Convolution and pooling as autodiff ops on ``[N, C, H, W]`` float32 arrays.

Both take explicit ``(top, bottom, left, right)`` pads; turning Core ML's padding rules
(valid with amounts, same, includeLastPixel) into pads is done once, from the layer's
parameters and the input size, by ``coreml.padding`` (shared with the engine). Windows
are strided views (no copies on the forward pass); the backward pass adds each kernel
tap's share back into the padded input, which handles overlapping windows.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .autodiff import DTYPE, Value, make

Pads = tuple[int, int, int, int]  # top, bottom, left, right


def _windows(
    xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> np.ndarray:
    """``[N, C, Ho, Wo, kh, kw]`` view of the windows of a padded input."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    view = sliding_window_view(xp, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _scatter_taps(
    shape: tuple[int, ...],
    taps: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Inverse of :func:`_windows`: add ``taps[N, C, Ho, Wo, kh, kw]`` into an array."""
    out = np.zeros(shape, dtype=DTYPE)
    _, _, ho, wo, kh, kw = taps.shape
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            out[:, :, r : r + sh * (ho - 1) + 1 : sh, c : c + sw * (wo - 1) + 1 : sw] += taps[
                :, :, :, :, i, j
            ]
    return out


def _pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return np.pad(
        x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="constant", constant_values=value
    )


def _unpad(xp: np.ndarray, pads: Pads) -> np.ndarray:
    top, bottom, left, right = pads
    h, w = xp.shape[2], xp.shape[3]
    return xp[:, :, top : h - bottom, left : w - right]


def conv2d(
    x: Value,
    weight: Value,
    bias: Value | None,
    *,
    stride: tuple[int, int] = (1, 1),
    pads: Pads = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> Value:
    """2-D convolution; ``weight`` is ``[Cout, Cin/groups, kh, kw]`` (Core ML's layout)."""
    n, c_in = x.shape[0], x.shape[1]
    c_out, c_group, kh, kw = weight.shape
    xp = _pad(x.data, pads)
    win = _windows(xp, (kh, kw), stride, dilation)
    ho, wo = win.shape[2], win.shape[3]
    win_g = win.reshape(n, groups, c_in // groups, ho, wo, kh, kw)
    w_g = weight.data.reshape(groups, c_out // groups, c_group, kh, kw)
    y = np.einsum("ngchwij,gocij->ngohw", win_g, w_g, optimize=True).reshape(n, c_out, ho, wo)
    if bias is not None:
        y = y + bias.data.reshape(1, c_out, 1, 1)

    def backward(g: np.ndarray) -> None:
        g_g = g.reshape(n, groups, c_out // groups, ho, wo)
        if weight.requires_grad:
            gw = np.einsum("ngohw,ngchwij->gocij", g_g, win_g, optimize=True)
            weight.accumulate(gw.reshape(weight.shape))
        if bias is not None:
            bias.accumulate(g.sum(axis=(0, 2, 3)))
        if x.requires_grad:
            taps = np.einsum("ngohw,gocij->ngchwij", g_g, w_g, optimize=True)
            taps = taps.reshape(n, c_in, ho, wo, kh, kw)
            x.accumulate(_unpad(_scatter_taps(xp.shape, taps, stride, dilation), pads))

    parents = [x, weight] + ([bias] if bias is not None else [])
    return make(y.astype(DTYPE, copy=False), parents, backward, op="convolution")


def max_pool2d(
    x: Value, *, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads = (0, 0, 0, 0)
) -> Value:
    """Windowed max pooling (padding never wins: it is -inf)."""
    xp = _pad(x.data, pads, value=-np.inf)
    win = _windows(xp, kernel, stride, (1, 1))
    n, c, ho, wo, kh, kw = win.shape
    flat = win.reshape(n, c, ho, wo, kh * kw)
    # The first maximum takes the gradient, as PyTorch and onnxruntime pick it.
    index = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]

    def backward(g: np.ndarray) -> None:
        taps = np.zeros((n, c, ho, wo, kh * kw), dtype=DTYPE)
        np.put_along_axis(taps, index[..., None], g[..., None], axis=-1)
        taps = taps.reshape(n, c, ho, wo, kh, kw)
        x.accumulate(_unpad(_scatter_taps(xp.shape, taps, stride, (1, 1)), pads))

    return make(y.astype(DTYPE), [x], backward, op="maxPool")


def avg_pool2d(
    x: Value,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: Pads = (0, 0, 0, 0),
    exclude_padding: bool = False,
) -> Value:
    """Windowed average pooling; ``exclude_padding`` divides by the real pixels only."""
    xp = _pad(x.data, pads)
    win = _windows(xp, kernel, stride, (1, 1))
    n, c, ho, wo, kh, kw = win.shape
    if exclude_padding and any(pads):
        ones = _pad(np.ones((1, 1, x.shape[2], x.shape[3]), dtype=DTYPE), pads)
        count = _windows(ones, kernel, stride, (1, 1)).sum(axis=(-2, -1))
    else:
        count = np.full((1, 1, ho, wo), kh * kw, dtype=DTYPE)
    y = win.sum(axis=(-2, -1)) / count

    def backward(g: np.ndarray) -> None:
        share = (g / count)[..., None, None]
        taps = np.broadcast_to(share, (n, c, ho, wo, kh, kw))
        x.accumulate(_unpad(_scatter_taps(xp.shape, taps, stride, (1, 1)), pads))

    return make(y.astype(DTYPE), [x], backward, op="averagePool")


def global_pool(x: Value, *, kind: str) -> Value:
    """Global ``"max"`` or ``"average"`` pooling to ``[N, C, 1, 1]``."""
    n, c, h, w = x.shape
    flat = x.data.reshape(n, c, h * w)
    if kind == "max":
        index = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, index[..., None], axis=-1).reshape(n, c, 1, 1)
    else:
        y = flat.mean(axis=-1).reshape(n, c, 1, 1)

    def backward(g: np.ndarray) -> None:
        g2 = g.reshape(n, c)
        if kind == "max":
            gx = np.zeros((n, c, h * w), dtype=DTYPE)
            np.put_along_axis(gx, index[..., None], g2[..., None], axis=-1)
        else:
            gx = np.broadcast_to((g2 / (h * w))[..., None], (n, c, h * w))
        x.accumulate(gx.reshape(n, c, h, w))

    return make(y.astype(DTYPE), [x], backward, op=f"global{kind.title()}Pool")
