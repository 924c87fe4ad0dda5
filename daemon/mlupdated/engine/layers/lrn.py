"""Converter for ``lrn``: local response normalization across channels.

Core ML and ONNX agree on the formula: ``x / (k + alpha/localSize * sum x_j^2)^beta``,
both divide alpha by the window size. The window of channel ``c`` is
``[c - floor((n-1)/2), c + ceil((n-1)/2)]`` in ONNX (as in Caffe, where Core ML's LRN
comes from); for odd sizes it is centred. Inputs of any rank >= 3 run through
``upsample.as_nchw`` (leading axes are batch). onnxruntime's LRN takes odd sizes only, so
an even window is spelled out: the mean of the squares over the window is an average
pool (zero padding counted) over the channel axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from .upsample import as_nchw

DEFAULT_K = 1.0  # proto: "Defaults to 1 if not set or 0"


@converts("lrn")
def convert_lrn(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Local response normalization over a ``localSize`` window of channels."""
    params = layer.lrn
    if params.localSize < 1:
        raise InvalidModelError(
            f"layer {layer.name!r} (lrn): localSize must be >= 1, got {params.localSize}",
            layer=layer.name,
        )
    k = params.k if params.k != 0 else DEFAULT_K
    if k < 0:
        raise InvalidModelError(
            f"layer {layer.name!r} (lrn): k must be positive, got {k}", layer=layer.name
        )
    if params.localSize % 2 == 0:
        return as_nchw(layer, ctx, lambda x, y: _even_window_lrn(ctx, x, y, params, k))
    return as_nchw(
        layer,
        ctx,
        lambda x, y: [
            ctx.node(
                "LRN",
                [x],
                [y],
                alpha=float(params.alpha),
                beta=float(params.beta),
                bias=float(k),
                size=int(params.localSize),
            )
        ],
    )


def _even_window_lrn(
    ctx: ConvertContext, source: str, target: str, params: Any, k: float
) -> list[onnx.NodeProto]:
    size = int(params.localSize)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    squares = ctx.fresh(f"{target}__sq")
    stacked = ctx.fresh(f"{target}__sq5")
    mean = ctx.fresh(f"{target}__mean5")
    mean4 = ctx.fresh(f"{target}__mean")
    scaled = ctx.fresh(f"{target}__scaled")
    shifted = ctx.fresh(f"{target}__shifted")
    denominator = ctx.fresh(f"{target}__den")
    axis = ctx.int64s([1], hint="axes")
    return [
        ctx.node("Mul", [source, source], [squares]),
        # [N, 1, C, H, W]: pool over C with a (size, 1, 1) window.
        ctx.node("Unsqueeze", [squares, axis], [stacked]),
        ctx.node(
            "AveragePool",
            [stacked],
            [mean],
            kernel_shape=[size, 1, 1],
            pads=[before, 0, 0, after, 0, 0],
            count_include_pad=1,
        ),
        ctx.node("Squeeze", [mean, axis], [mean4]),
        ctx.node("Mul", [mean4, ctx.const(np.float32(params.alpha), hint="alpha")], [scaled]),
        ctx.node("Add", [scaled, ctx.const(np.float32(k), hint="k")], [shifted]),
        ctx.node("Pow", [shifted, ctx.const(np.float32(params.beta), hint="beta")], [denominator]),
        ctx.node("Div", [source, denominator], [target]),
    ]
