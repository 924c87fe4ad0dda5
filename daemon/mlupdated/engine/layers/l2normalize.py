"""Converter for ``l2normalize``: each example divided by the L2 norm of its C·H·W values.

The proto puts epsilon inside the square root: ``x / sqrt(sum(x^2) + epsilon)``, which
ONNX's ``LpNormalization`` (per axis, no epsilon) does not express, so it is spelled out.
"""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import input_rank, one_input
from .reduce import reduce_node

DEFAULT_EPSILON = 1e-6  # proto: "Defaults to 1e-6 if not set or set to 0"
_AXES = (-3, -2, -1)
_MIN_RANK = 4  # C, H, W after the batch axis


@converts("l2normalize")
def convert_l2normalize(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = x / sqrt(sum_{C,H,W} x^2 + epsilon)``, per example (and per leading index)."""
    source, target = one_input(layer)
    rank = input_rank(layer, ctx, source, minimum=_MIN_RANK)
    epsilon = layer.l2normalize.epsilon or DEFAULT_EPSILON
    squares = ctx.fresh(f"{target}__sumsq")
    shifted = ctx.fresh(f"{target}__shifted")
    norm = ctx.fresh(f"{target}__norm")
    ctx.set_rank(target, rank)
    return [
        reduce_node(ctx, "ReduceSumSquare", source, squares, _AXES, keepdims=True),
        ctx.node("Add", [squares, ctx.const(epsilon, hint="epsilon", dtype="float32")], [shifted]),
        ctx.node("Sqrt", [shifted], [norm]),
        ctx.node("Div", [source, norm], [target]),
    ]
