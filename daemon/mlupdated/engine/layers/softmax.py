"""Converters for ``softmax`` (classic: over axis -3, the channels) and ``softmaxND``
(any axis).

A softmax over the batch axis 0 is, for Core ML, a softmax over an axis of one
element in each run: 1 everywhere. That happens with ``softmaxND`` along axis 0 and
with the classic layer on a rank-3 ND blob, whose axis -3 is the batch.
"""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import channel_axis, check_io, nd_axis, same_rank_output

_ND_RANK_OF_BATCH_AT_MINUS_3 = 3


def _softmax(ctx: ConvertContext, x: str, y: str, axis: int) -> list[onnx.NodeProto]:
    if axis == 0:
        # exp(x - x) is 1 (NaN where x is not finite, as a softmax over one value is).
        diff = ctx.fresh(f"{y}__zero")
        return [ctx.node("Sub", [x, x], [diff]), ctx.node("Exp", [diff], [y])]
    return [ctx.node("Softmax", [x], [y], axis=axis)]


@converts("softmax")
def convert_softmax(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``softmax`` over axis -3: the channels of ``[N, C, H, W]`` (and of a
    rank-2 ``[N, C]`` vector), the batch of a rank-3 ND blob."""
    check_io(layer)
    rank = ctx.rank(layer.input[0])
    axis = 0 if rank == _ND_RANK_OF_BATCH_AT_MINUS_3 else channel_axis(rank)
    same_rank_output(layer, ctx)
    return _softmax(ctx, layer.input[0], layer.output[0], axis)


@converts("softmaxND")
def convert_softmax_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``softmaxND`` over ``axis``; over the batch axis it is 1 per example."""
    check_io(layer)
    rank = ctx.rank(layer.input[0])
    axis = nd_axis(layer, int(layer.softmaxND.axis), rank)
    same_rank_output(layer, ctx)
    return _softmax(ctx, layer.input[0], layer.output[0], axis)
