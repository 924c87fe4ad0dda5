"""Converter for ``pooling``: MAX, AVERAGE and L2, global or windowed, with Core ML's
three padding rules (valid with explicit amounts, same, includeLastPixel); and
``globalPooling3d`` (MAX / AVERAGE over depth, height and width).

Output sizes follow Core ML exactly; every rule is turned into explicit begin/end
pads computed from the static input size, so the runtime's ceil-mode and auto-pad
conventions never come into play.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...coreml.padding import include_last_pixel_pads
from ..registry import ConvertContext, converts
from ._common import check_io, invalid
from .convolution import border_pads, pair, same_pads, spatial_size

# PoolingLayerParams.PoolingType values.
MAX, AVERAGE, L2 = 0, 1, 2
_GLOBAL_OPS = {MAX: "GlobalMaxPool", AVERAGE: "GlobalAveragePool", L2: "GlobalLpPool"}


def _last_window_factor(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    begin: tuple[int, int],
    end: tuple[int, int],
) -> np.ndarray:
    """kernel area / counted area of each output window, ``[1, 1, outH, outW]``."""
    counts = []
    for n, k, s, b, e in zip(size, kernel, stride, begin, end, strict=True):
        out = (n + b + e - k) // s + 1
        starts = np.arange(out) * s - b
        counts.append(np.minimum(starts + k, n + b) - starts)
    area = np.outer(counts[0], counts[1]).astype(np.float32)
    return (kernel[0] * kernel[1] / area).reshape(1, 1, *area.shape).astype(np.float32)


@converts("pooling")
def convert_pooling(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """MAX, AVERAGE and L2 pooling, global or windowed, with Core ML's output sizes."""
    check_io(layer)
    p = layer.pooling
    x, y = layer.input[0], layer.output[0]
    if ctx.rank(x) != 4:
        raise invalid(layer, f"input must be [N, C, H, W] (rank {ctx.rank(x)})")
    if p.type not in _GLOBAL_OPS:
        raise invalid(layer, f"pooling type {p.type} is not known")
    ctx.set_rank(y, 4)
    if p.globalPooling:
        attrs = {"p": 2} if p.type == L2 else {}
        return [ctx.node(_GLOBAL_OPS[p.type], [x], [y], **attrs)]
    kh, kw = pair(p.kernelSize, 3)
    sh, sw = pair(p.stride, 1)
    if min(kh, kw, sh, sw) <= 0:
        raise invalid(layer, "kernel and stride must be positive")
    padding = p.WhichOneof("PoolingPaddingType")
    h, w = spatial_size(layer, ctx, x)
    if padding == "same":
        mode = p.same.asymmetryMode
        top, bottom = same_pads(h, kh, sh, 1, mode)
        left, right = same_pads(w, kw, sw, 1, mode)
    elif padding == "includeLastPixel":
        ph, pw = pair(p.includeLastPixel.paddingAmounts, 0)
        top, bottom = include_last_pixel_pads(h, kh, sh, ph)
        left, right = include_last_pixel_pads(w, kw, sw, pw)
    else:
        top, left, bottom, right = border_pads(p.valid)
    if h + top + bottom < kh or w + left + right < kw:
        raise invalid(layer, f"kernel {kh}x{kw} is larger than the padded {h}x{w} input")
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[top, left, bottom, right])
    if p.type == MAX:
        return [ctx.node("MaxPool", [x], [y], **attrs)]
    if p.type == AVERAGE:
        include = 0 if p.avgPoolExcludePadding else 1
        if include and padding == "includeLastPixel" and (bottom > top or right > left):
            # The last window may reach past the padding; it counts the padding but not
            # what lies beyond it (Caffe's and PyTorch's ceil-mode rule).
            mean = ctx.fresh("mean")
            factor = _last_window_factor((h, w), (kh, kw), (sh, sw), (top, left), (bottom, right))
            return [
                ctx.node("AveragePool", [x], [mean], count_include_pad=1, **attrs),
                ctx.node("Mul", [mean, ctx.const(factor, hint="divisor_fix")], [y]),
            ]
        return [ctx.node("AveragePool", [x], [y], count_include_pad=include, **attrs)]
    # L2: sqrt of the sum of squares over the window (padding adds zeros).
    if any((top, left, bottom, right)):
        padded = ctx.fresh("padded")
        pads = ctx.int64s([0, 0, top, left, 0, 0, bottom, right], hint="pads")
        attrs["pads"] = [0, 0, 0, 0]
        return [
            ctx.node("Pad", [x, pads, ctx.const(np.float32(0), hint="zero")], [padded]),
            ctx.node("LpPool", [padded], [y], p=2, **attrs),
        ]
    return [ctx.node("LpPool", [x], [y], p=2, **attrs)]


# GlobalPooling3DLayerParams.GlobalPoolingType3D values.
_GLOBAL_3D_OPS = {0: "GlobalMaxPool", 1: "GlobalAveragePool"}


@converts("globalPooling3d")
def convert_global_pooling_3d(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``globalPooling3d``: MAX or AVERAGE over depth, height and width."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    if ctx.rank(x) != 5:
        raise invalid(layer, f"input must be [N, C, D, H, W] (rank {ctx.rank(x)})")
    op = _GLOBAL_3D_OPS.get(layer.globalPooling3d.type)
    if op is None:
        raise invalid(layer, f"pooling type {layer.globalPooling3d.type} is not known")
    ctx.set_rank(y, 5)
    return [ctx.node(op, [x], [y])]
