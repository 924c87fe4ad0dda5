"""Converter for ``crop``: cut the H and W axes, by fixed amounts (one input) or to the
size of a reference blob at an offset (two inputs).

``cropResize`` (bilinear RoI extraction on rank-5 blobs) is not converted: a network
that contains it is refused at load time, by name.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from ._common import check_io, input_rank

_INT64_MAX = 2**63 - 1  # an ONNX Slice end meaning "to the end of the axis"
_SPATIAL_AXES = (-2, -1)
_MIN_RANK = 4  # batch, C, H, W


@converts("crop")
def convert_crop(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``x[..., top:H-bottom, left:W-right]`` or ``x[..., oh:oh+H_ref, ow:ow+W_ref]``."""
    params = layer.crop
    check_io(layer, inputs=(1, 2))
    source, target = layer.input[0], layer.output[0]
    rank = input_rank(layer, ctx, source, minimum=_MIN_RANK)
    ctx.set_rank(target, rank)
    axes = ctx.int64s(_SPATIAL_AXES, hint="axes")
    if len(layer.input) == 1:
        amounts = params.cropAmounts.borderAmounts
        if len(amounts) != 2:
            raise InvalidModelError(
                f"layer {layer.name!r} (crop) needs cropAmounts for H and W, got "
                f"{len(amounts)} border amounts",
                layer=layer.name,
            )
        starts = [int(a.startEdgeSize) for a in amounts]
        # An end amount of 0 keeps the axis to its end; Slice's end -0 would be empty.
        ends = [-int(a.endEdgeSize) if a.endEdgeSize else _INT64_MAX for a in amounts]
        return [
            ctx.node(
                "Slice",
                [source, ctx.int64s(starts, hint="starts"), ctx.int64s(ends, hint="ends"), axes],
                [target],
            )
        ]
    reference = layer.input[1]
    if ctx.rank(reference) != rank:
        raise InvalidModelError(
            f"layer {layer.name!r} (crop): both inputs must have the same rank, got {rank} "
            f"and {ctx.rank(reference)}",
            layer=layer.name,
        )
    offset = [int(v) for v in params.offset]
    if len(offset) != 2:
        raise InvalidModelError(
            f"layer {layer.name!r} (crop) with a reference input needs offset [H, W], got {offset}",
            layer=layer.name,
        )
    # The output size comes from the reference blob at run time.
    shape = ctx.fresh(f"{target}__refshape")
    ends = ctx.fresh(f"{target}__ends")
    starts = ctx.int64s(offset, hint="starts")
    return [
        ctx.node("Shape", [reference], [shape], start=rank - 2),
        ctx.node("Add", [shape, starts], [ends]),
        ctx.node("Slice", [source, starts, ends, axes], [target]),
    ]
