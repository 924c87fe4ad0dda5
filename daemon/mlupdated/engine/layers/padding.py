"""Converters for ``padding`` (constant / reflection / replication over H and W) and
the ND ``constantPad``."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import check_io, invalid, same_rank_output, unsupported
from .convolution import border_pads

_MODES = {"constant": "constant", "reflection": "reflect", "replication": "edge"}


def _pad_node(
    ctx: ConvertContext,
    x: str,
    y: str,
    begins: list[int],
    ends: list[int],
    *,
    mode: str,
    value: float = 0.0,
) -> onnx.NodeProto:
    pads = ctx.int64s([*begins, *ends], hint="pads")
    inputs = [x, pads]
    if mode == "constant":
        inputs.append(ctx.const(np.float32(value), hint="pad_value"))
    return ctx.node("Pad", inputs, [y], mode=mode)


@converts("padding")
def convert_padding(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``padding`` (constant, reflection, replication) of height and width."""
    check_io(layer)
    p = layer.padding
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if rank < 3:
        raise invalid(layer, f"input must have spatial axes (rank {rank})")
    kind = p.WhichOneof("PaddingType") or "constant"
    top, left, bottom, right = border_pads(p)
    lead = [0] * (rank - 2)
    same_rank_output(layer, ctx)
    value = p.constant.value if kind == "constant" else 0.0
    return [
        _pad_node(
            ctx, x, y, [*lead, top, left], [*lead, bottom, right], mode=_MODES[kind], value=value
        )
    ]


@converts("constantPad")
def convert_constant_pad(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``constantPad`` of any axes by stored amounts."""
    check_io(layer)
    p = layer.constantPad
    if p.padToGivenOutputSizeMode:
        raise unsupported(layer, "padToGivenOutputSizeMode")
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    amounts = [int(v) for v in p.padAmounts]
    if len(amounts) % 2 or len(amounts) // 2 > rank:
        raise invalid(layer, f"padAmounts {amounts} do not fit a rank-{rank} input")
    # padAmounts are (begin, end) pairs for the last len/2 axes.
    k = len(amounts) // 2
    lead = [0] * (rank - k)
    begins = lead + amounts[0::2]
    ends = lead + amounts[1::2]
    same_rank_output(layer, ctx)
    return [_pad_node(ctx, x, y, begins, ends, mode="constant", value=p.value)]
