"""Converters for ``concat`` (classic: along channels) and ``concatND`` (any axis)."""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import channel_axis, check_io, invalid, nd_axis, unsupported


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
    return [ctx.node("Concat", list(layer.input), [layer.output[0]], axis=axis)]


@converts("concatND")
def convert_concat_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``concatND`` along ``axis`` (negative counts from the end)."""
    check_io(layer, inputs=(1, None))
    if layer.concatND.interleave:
        raise unsupported(layer, "interleave")
    rank = _common_rank(layer, ctx)
    axis = nd_axis(layer, int(layer.concatND.axis), rank)
    ctx.set_rank(layer.output[0], rank)
    return [ctx.node("Concat", list(layer.input), [layer.output[0]], axis=axis)]
