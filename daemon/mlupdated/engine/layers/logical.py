"""Converters for the ND comparisons (``equal``, ``notEqual``, ``lessThan``,
``lessEqual``, ``greaterThan``, ``greaterEqual``) and the logical layers
(``logicalAnd``, ``logicalOr``, ``logicalXor``, ``logicalNot``).

Core ML blobs are float: a comparison writes 1.0 or 0.0, and a logical layer reads any
non-zero value as true. Two inputs broadcast as ``addBroadcastable`` does (a lower-rank
operand that carries the batch keeps it on axis 0); a comparison with one input
compares it with the layer's ``alpha``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import align_batch, check_io

_COMPARISONS = {
    "equal": "Equal",
    "notEqual": "Equal",  # then Not
    "lessThan": "Less",
    "lessEqual": "LessOrEqual",
    "greaterThan": "Greater",
    "greaterEqual": "GreaterOrEqual",
}
_LOGICAL = {"logicalAnd": "And", "logicalOr": "Or", "logicalXor": "Xor"}


def _operands(layer: Any, ctx: ConvertContext, nodes: list) -> list[str]:
    """The inputs aligned for broadcasting, and the output's rank recorded."""
    blobs = list(layer.input)
    ranks = [ctx.rank(b) for b in blobs]
    top = max(ranks)
    ctx.set_rank(layer.output[0], top)
    return [align_batch(ctx, b, r, top, nodes) for b, r in zip(blobs, ranks, strict=True)]


def _as_float(ctx: ConvertContext, flag: str, out: str) -> onnx.NodeProto:
    return ctx.node("Cast", [flag], [out], to=onnx.TensorProto.FLOAT)


@converts(*_COMPARISONS)
def convert_comparison(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``x OP y`` (or ``x OP alpha`` with one input) as 1.0 / 0.0."""
    check_io(layer, inputs=(1, 2))
    kind = layer.WhichOneof("layer")
    nodes: list[onnx.NodeProto] = []
    operands = _operands(layer, ctx, nodes)
    if len(operands) == 1:
        alpha = float(getattr(layer, kind).alpha)
        operands.append(ctx.const(np.float32(alpha), hint="alpha"))
    flag = ctx.fresh("flag")
    nodes.append(ctx.node(_COMPARISONS[kind], operands, [flag]))
    if kind == "notEqual":
        negated = ctx.fresh("not")
        nodes.append(ctx.node("Not", [flag], [negated]))
        flag = negated
    nodes.append(_as_float(ctx, flag, layer.output[0]))
    return nodes


def _truth(ctx: ConvertContext, blob: str, nodes: list) -> str:
    """A float blob as booleans: non-zero is true."""
    zero = ctx.const(np.float32(0.0), hint="zero")
    is_zero, truth = ctx.fresh("is_zero"), ctx.fresh("truth")
    nodes.append(ctx.node("Equal", [blob, zero], [is_zero]))
    nodes.append(ctx.node("Not", [is_zero], [truth]))
    return truth


@converts(*_LOGICAL, "logicalNot")
def convert_logical(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``and``/``or``/``xor`` of two inputs, ``not`` of one, as 1.0 / 0.0."""
    kind = layer.WhichOneof("layer")
    check_io(layer, inputs=1 if kind == "logicalNot" else 2)
    nodes: list[onnx.NodeProto] = []
    truths = [_truth(ctx, b, nodes) for b in _operands(layer, ctx, nodes)]
    flag = ctx.fresh("flag")
    nodes.append(ctx.node(_LOGICAL.get(kind, "Not"), truths, [flag]))
    nodes.append(_as_float(ctx, flag, layer.output[0]))
    return nodes
