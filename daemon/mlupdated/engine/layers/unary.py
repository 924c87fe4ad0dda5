"""Converters for the elementwise unary layers: classic ``unary`` and the ND layers
coremltools emits for elementwise math (``exp2``, ``floor``, ``ceil``, ``round``,
``sign``, trigonometric and hyperbolic functions, ``erf``).

Classic ``unary`` computes ``f(scale * x + shift)`` (the shift/scale of Caffe's Power
layer, which it descends from). Epsilon enters only RSQRT and INVERSE, as the proto's
formulas say; LOG is ``log(x)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...errors import UnsupportedLayerError
from ..registry import ConvertContext, converts
from ._common import one_input

DEFAULT_EPSILON = 1e-6  # proto: "Defaults to 1e-6 if not set or set to 0"
DEFAULT_SCALE = 1.0  # proto: "Defaults to 1.0 if not set or set to 0"

_SQRT, _RSQRT, _INVERSE, _POWER, _EXP, _LOG, _ABS, _THRESHOLD = range(8)

# ND layer oneof name -> the ONNX op computing it elementwise. ``round`` rounds halves
# to even, as ONNX Round does.
_ND_OPS = {
    "ceil": "Ceil",
    "floor": "Floor",
    "round": "Round",
    "sign": "Sign",
    "sin": "Sin",
    "cos": "Cos",
    "tan": "Tan",
    "asin": "Asin",
    "acos": "Acos",
    "atan": "Atan",
    "sinh": "Sinh",
    "cosh": "Cosh",
    "tanh": "Tanh",
    "asinh": "Asinh",
    "acosh": "Acosh",
    "atanh": "Atanh",
    "erf": "Erf",
}


def _scalar(ctx: ConvertContext, value: float, hint: str) -> str:
    return ctx.const(np.float32(value), hint=hint)


@converts("unary")
def convert_unary(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``f(scale*x + shift)`` for SQRT, RSQRT, INVERSE, POWER, EXP, LOG, ABS, THRESHOLD."""
    source, target = one_input(layer)
    params = layer.unary
    scale = params.scale if params.scale != 0 else DEFAULT_SCALE
    epsilon = params.epsilon if params.epsilon != 0 else DEFAULT_EPSILON
    nodes: list[onnx.NodeProto] = []
    x = source
    if scale != 1.0:
        scaled = ctx.fresh(f"{target}__scaled")
        nodes.append(ctx.node("Mul", [x, _scalar(ctx, scale, "scale")], [scaled]))
        x = scaled
    if params.shift != 0.0:
        shifted = ctx.fresh(f"{target}__shifted")
        nodes.append(ctx.node("Add", [x, _scalar(ctx, params.shift, "shift")], [shifted]))
        x = shifted
    ctx.set_rank(target, ctx.rank(source))
    op = params.type
    if op in (_RSQRT, _INVERSE):
        padded = ctx.fresh(f"{target}__eps")
        nodes.append(ctx.node("Add", [x, _scalar(ctx, epsilon, "epsilon")], [padded]))
        if op == _RSQRT:
            root = ctx.fresh(f"{target}__sqrt")
            nodes.append(ctx.node("Sqrt", [padded], [root]))
            padded = root
        nodes.append(ctx.node("Reciprocal", [padded], [target]))
    elif op == _POWER:
        nodes.append(ctx.node("Pow", [x, _scalar(ctx, params.alpha, "alpha")], [target]))
    elif op == _THRESHOLD:
        nodes.append(ctx.node("Max", [x, _scalar(ctx, params.alpha, "alpha")], [target]))
    elif op in (_SQRT, _EXP, _LOG, _ABS):
        op_type = {_SQRT: "Sqrt", _EXP: "Exp", _LOG: "Log", _ABS: "Abs"}[op]
        nodes.append(ctx.node(op_type, [x], [target]))
    else:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: unary operation {op} is not supported",
            layer=layer.name,
            layer_type="unary",
        )
    return nodes


@converts("exp2")
def convert_exp2(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = 2^x``."""
    source, target = one_input(layer)
    ctx.set_rank(target, ctx.rank(source))
    return [ctx.node("Pow", [_scalar(ctx, 2.0, "two"), source], [target])]


@converts(*_ND_OPS)
def convert_elementwise(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The parameterless ND elementwise functions (see ``_ND_OPS``)."""
    source, target = one_input(layer)
    ctx.set_rank(target, ctx.rank(source))
    return [ctx.node(_ND_OPS[layer.WhichOneof("layer")], [source], [target])]
