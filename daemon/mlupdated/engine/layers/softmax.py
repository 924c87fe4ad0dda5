"""Converters for ``softmax`` (classic: over channels) and ``softmaxND`` (any axis)."""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import channel_axis, check_io, nd_axis, same_rank_output


@converts("softmax")
def convert_softmax(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``softmax`` over the channel axis."""
    check_io(layer)
    rank = ctx.rank(layer.input[0])
    same_rank_output(layer, ctx)
    return [ctx.node("Softmax", [layer.input[0]], [layer.output[0]], axis=channel_axis(rank))]


@converts("softmaxND")
def convert_softmax_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``softmaxND`` over ``axis``; over the batch axis it is 1 per example."""
    check_io(layer)
    rank = ctx.rank(layer.input[0])
    axis = nd_axis(layer, int(layer.softmaxND.axis), rank)
    same_rank_output(layer, ctx)
    x, y = layer.input[0], layer.output[0]
    if axis == 0:
        # For Core ML the batch axis has size 1 in each run: exp(x - x) / itself = 1
        # (NaN where x is not finite, as there).
        diff = ctx.fresh(f"{y}__zero")
        return [ctx.node("Sub", [x, x], [diff]), ctx.node("Exp", [diff], [y])]
    return [ctx.node("Softmax", [x], [y], axis=axis)]
