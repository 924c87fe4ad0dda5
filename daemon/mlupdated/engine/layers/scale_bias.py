"""Converters for ``scale`` and ``bias``: a per-tensor, per-channel or per-pixel
multiplier and/or offset, broadcast over the trailing ``[C, H, W]`` of each example.

The proto allows the shapes ``[1]``, ``[C]``, ``[1, H, W]`` and ``[C, H, W]``; ``[C]``
becomes ``[C, 1, 1]`` so that NumPy-style broadcasting lines it up with the channels.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from ._common import one_input


def _broadcast_shape(layer: Any, shape: list[int], *, what: str) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if len(dims) == 1:
        return dims if dims[0] == 1 else (dims[0], 1, 1)
    if len(dims) == 3:
        return dims
    raise InvalidModelError(
        f"layer {layer.name!r}: {what} shape {list(dims)} is not one of [1], [C], [1, H, W], "
        "[C, H, W]",
        layer=layer.name,
    )


def _operand(
    layer: Any, ctx: ConvertContext, params: Any, shape: list[int], *, what: str, rank: int
) -> str:
    dims = _broadcast_shape(layer, shape, what=what)
    if len(dims) >= rank:
        raise InvalidModelError(
            f"layer {layer.name!r}: a {what} of shape {list(shape)} needs an input of rank "
            f">= {len(dims) + 1} (batch included), got rank {rank}",
            layer=layer.name,
        )
    return ctx.weights(params, dims, hint=f"{layer.name}/{what}")


@converts("scale")
def convert_scale(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = scale * x (+ bias)``, both broadcast to the input."""
    source, target = one_input(layer)
    params = layer.scale
    rank = ctx.rank(source)
    scale = _operand(layer, ctx, params.scale, list(params.shapeScale), what="scale", rank=rank)
    ctx.set_rank(target, rank)
    if not params.hasBias:
        return [ctx.node("Mul", [source, scale], [target])]
    bias = _operand(layer, ctx, params.bias, list(params.shapeBias), what="bias", rank=rank)
    scaled = ctx.fresh(f"{target}__scaled")
    return [
        ctx.node("Mul", [source, scale], [scaled]),
        ctx.node("Add", [scaled, bias], [target]),
    ]


@converts("bias")
def convert_bias(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = x + bias``, the bias broadcast to the input."""
    source, target = one_input(layer)
    params = layer.bias
    rank = ctx.rank(source)
    bias = _operand(layer, ctx, params.bias, list(params.shape), what="bias", rank=rank)
    ctx.set_rank(target, rank)
    return [ctx.node("Add", [source, bias], [target])]
