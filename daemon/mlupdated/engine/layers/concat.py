"""Converters for ``concat`` (classic: along channels) and ``concatND`` (any axis but
the batch). A constant among the inputs is repeated for each example of the batch."""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import batch_each, channel_axis, check_io, invalid, nd_axis, refused, unsupported


def _common_rank(layer: Any, ctx: ConvertContext) -> int:
    ranks = {ctx.rank(b) for b in layer.input}
    if len(ranks) != 1:
        raise invalid(layer, f"inputs have different ranks {sorted(ranks)}")
    return ranks.pop()


@converts("concat")
def convert_concat(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``concat`` along channels (``sequenceConcat`` is refused)."""
    check_io(layer, inputs=(1, None))
    if layer.concat.sequenceConcat:
        raise unsupported(layer, "sequenceConcat")
    rank = _common_rank(layer, ctx)
    ctx.set_rank(layer.output[0], rank)
    axis = channel_axis(rank)
    nodes: list[onnx.NodeProto] = []
    inputs = batch_each(ctx, list(layer.input), nodes)
    return [*nodes, ctx.node("Concat", inputs, [layer.output[0]], axis=axis)]


@converts("concatND")
def convert_concat_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``concatND`` along ``axis`` (negative counts from the end)."""
    check_io(layer, inputs=(1, None))
    if layer.concatND.interleave:
        raise unsupported(layer, "interleave")
    rank = _common_rank(layer, ctx)
    axis = nd_axis(layer, int(layer.concatND.axis), rank)
    if axis == 0:
        # Each example's axis 0 would grow past the batch of one it is for Core ML.
        raise refused(layer, "concatenation along the batch axis 0 is not supported")
    ctx.set_rank(layer.output[0], rank)
    nodes: list[onnx.NodeProto] = []
    inputs = batch_each(ctx, list(layer.input), nodes)
    return [*nodes, ctx.node("Concat", inputs, [layer.output[0]], axis=axis)]
