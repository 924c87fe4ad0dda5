"""Converters for element-wise arithmetic: the classic ``add``, ``multiply``,
``average``, ``max``, ``min`` (N inputs; ``alpha`` when there is one), and the ND
broadcastable ones (``addBroadcastable``, ``subtractBroadcastable``...), which align a
lower-rank operand that carries the batch the way ``batchedMatmul`` does."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import align_batch, check_io, invalid

_BROADCASTABLE = {
    "addBroadcastable": "Add",
    "subtractBroadcastable": "Sub",
    "multiplyBroadcastable": "Mul",
    "divideBroadcastable": "Div",
    "maxBroadcastable": "Max",
    "minBroadcastable": "Min",
    "powBroadcastable": "Pow",
}


def _out_rank(layer: Any, ctx: ConvertContext) -> None:
    ctx.set_rank(layer.output[0], max(ctx.rank(b) for b in layer.input))


def _classic_inputs(ctx: ConvertContext, inputs: list[str], nodes: list) -> list[str]:
    """Classic operands, with a ``[N, C, H, W]`` blob that meets a sequence blob
    ``[N, Seq, C, H, W]`` given its size-1 Seq axis after the batch (constants, which
    have no batch of their own, broadcast from the right as they are)."""
    ranks = [ctx.rank(b) for b in inputs]
    if max(ranks) != 5:
        return inputs
    return [
        align_batch(ctx, b, r, 5, nodes) if r == 4 else b
        for b, r in zip(inputs, ranks, strict=True)
    ]


def _fold(ctx: ConvertContext, op: str, inputs: list[str], out: str) -> list[onnx.NodeProto]:
    """A chain of binary ops (``Add``/``Mul`` broadcast pairwise, as Core ML does)."""
    nodes: list[onnx.NodeProto] = []
    inputs = _classic_inputs(ctx, inputs, nodes)
    acc = inputs[0]
    for i, blob in enumerate(inputs[1:], start=1):
        target = out if i == len(inputs) - 1 else ctx.fresh(op.lower())
        nodes.append(ctx.node(op, [acc, blob], [target]))
        acc = target
    return nodes


@converts("add", "multiply")
def convert_add_multiply(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``add``/``multiply``: the inputs folded pairwise, or one input with ``alpha``."""
    check_io(layer, inputs=(1, None))
    kind = layer.WhichOneof("layer")
    op = "Add" if kind == "add" else "Mul"
    alpha = layer.add.alpha if kind == "add" else layer.multiply.alpha
    _out_rank(layer, ctx)
    inputs = list(layer.input)
    if len(inputs) == 1:
        # One input: the scalar alpha is added / multiplied in.
        return [
            ctx.node(op, [inputs[0], ctx.const(np.float32(alpha), hint="alpha")], [layer.output[0]])
        ]
    return _fold(ctx, op, inputs, layer.output[0])


@converts("average")
def convert_average(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``average``: the sum of the inputs divided by their count."""
    check_io(layer, inputs=(1, None))
    _out_rank(layer, ctx)
    inputs = list(layer.input)
    if len(inputs) == 1:
        return [ctx.node("Identity", inputs, [layer.output[0]])]
    total = ctx.fresh("sum")
    nodes = _fold(ctx, "Add", inputs, total)
    scale = ctx.const(np.float32(1.0 / len(inputs)), hint="inv_count")
    nodes.append(ctx.node("Mul", [total, scale], [layer.output[0]]))
    return nodes


@converts("max", "min")
def convert_max_min(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``max``/``min`` over any number of inputs, broadcast together."""
    check_io(layer, inputs=(1, None))
    _out_rank(layer, ctx)
    op = "Max" if layer.WhichOneof("layer") == "max" else "Min"
    # ONNX Max/Min take any number of inputs and broadcast them all together.
    nodes: list[onnx.NodeProto] = []
    inputs = _classic_inputs(ctx, list(layer.input), nodes)
    return [*nodes, ctx.node(op, inputs, [layer.output[0]])]


@converts(*_BROADCASTABLE)
def convert_broadcastable(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The two-input ND ops (``addBroadcastable``...) with NumPy broadcasting per example."""
    check_io(layer, inputs=2)
    kind = layer.WhichOneof("layer")
    a, b = layer.input
    ranks = (ctx.rank(a), ctx.rank(b))
    if min(ranks) < 1:
        raise invalid(layer, "inputs must have rank >= 1")
    _out_rank(layer, ctx)
    # Core ML broadcasts per example: a lower-rank operand's batch stays on axis 0.
    nodes: list[onnx.NodeProto] = []
    a = align_batch(ctx, a, ranks[0], max(ranks), nodes)
    b = align_batch(ctx, b, ranks[1], max(ranks), nodes)
    return [*nodes, ctx.node(_BROADCASTABLE[kind], [a, b], [layer.output[0]])]
