"""Converters for the layers whose shapes are computed while the network runs:
``getShape``, ``fillLike``, ``fillStatic``, ``fillDynamic``, ``reshapeDynamic``,
``sliceDynamic``, ``broadcastToLike``, ``broadcastToStatic``, ``broadcastToDynamic``.

A shape is a rank-1 float blob, as in Core ML. It has no batch of its own: Core ML
runs each example with a batch of one, so ``getShape`` of a blob that carries the
batch says 1 for axis 0, whatever the batch size; a shape fed back to
``reshapeDynamic`` keeps the batch of the reshaped blob on axis 0, and
``broadcastTo*`` and ``fill*`` broadcast a 1 there against the batch. ``sliceDynamic``
slices the axes after the batch; the batch axis itself, of size one per example, is
kept whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from ...errors import InvalidModelError
from ..registry import FLOAT, ConvertContext, converts
from ._common import check_io, invalid, refused

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def _batched(ctx: ConvertContext, blob: str) -> bool:
    try:
        return ctx.static_shape(blob)[0] is None
    except (InvalidModelError, IndexError):
        return True


def _length(layer: Any, ctx: ConvertContext, shape_blob: str) -> int:
    """The number of entries of a rank-1 shape blob, which must be known now."""
    if ctx.rank(shape_blob) != 1:
        raise invalid(layer, f"the shape input must have rank 1, has rank {ctx.rank(shape_blob)}")
    length = ctx.static_shape(shape_blob)[0]
    if length is None:
        raise refused(layer, "the length of its shape input is not known at compile time")
    return int(length)


def _shape_ints(ctx: ConvertContext, shape_blob: str, nodes: list) -> str:
    out = ctx.fresh("shape")
    nodes.append(ctx.node("Cast", [shape_blob], [out], to=onnx.TensorProto.INT64))
    return out


def _fill(ctx: ConvertContext, shape: str, value: float, out: str) -> onnx.NodeProto:
    return ctx.node(
        "ConstantOfShape",
        [shape],
        [out],
        value=helper.make_tensor("value", FLOAT, [1], [float(value)]),
    )


@converts("getShape")
def convert_get_shape(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The input's shape as floats, with 1 for a batch axis."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    shape = ctx.fresh("shape")
    nodes = [ctx.node("Shape", [x], [shape])]
    if _batched(ctx, x):
        rest, ones = ctx.fresh("rest"), ctx.int64s([1], hint="one")
        nodes.append(
            ctx.node(
                "Slice",
                [shape, ctx.int64s([1], hint="starts"), ctx.int64s([_INT64_MAX], hint="ends")],
                [rest],
            )
        )
        per_example = ctx.fresh("per_example")
        nodes.append(ctx.node("Concat", [ones, rest], [per_example], axis=0))
        shape = per_example
    nodes.append(ctx.node("Cast", [shape], [y], to=onnx.TensorProto.FLOAT))
    ctx.set_rank(y, 1)
    return nodes


@converts("fillLike")
def convert_fill_like(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A blob of the input's shape (batch included) filled with ``value``."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    shape = ctx.fresh("shape")
    ctx.set_rank(y, ctx.rank(x))
    return [ctx.node("Shape", [x], [shape]), _fill(ctx, shape, layer.fillLike.value, y)]


@converts("fillStatic")
def convert_fill_static(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A constant of ``targetShape`` filled with ``value``."""
    check_io(layer, inputs=0)
    target = [int(d) for d in layer.fillStatic.targetShape]
    if not target:
        raise invalid(layer, "targetShape is empty")
    y = layer.output[0]
    ctx.set_rank(y, len(target))
    value = np.full(target, layer.fillStatic.value, dtype=np.float32)
    return [ctx.node("Identity", [ctx.const(value, hint="filled")], [y])]


@converts("fillDynamic")
def convert_fill_dynamic(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A blob of the shape its input holds, filled with ``value``."""
    check_io(layer)
    shape_blob, y = layer.input[0], layer.output[0]
    length = _length(layer, ctx, shape_blob)
    nodes: list[onnx.NodeProto] = []
    shape = _shape_ints(ctx, shape_blob, nodes)
    nodes.append(_fill(ctx, shape, layer.fillDynamic.value, y))
    ctx.set_rank(y, length)
    return nodes


@converts("reshapeDynamic")
def convert_reshape_dynamic(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The first input reshaped to the shape the second holds (its batch kept on axis 0)."""
    check_io(layer, inputs=2)
    x, shape_blob = layer.input
    y = layer.output[0]
    length = _length(layer, ctx, shape_blob)
    nodes: list[onnx.NodeProto] = []
    shape = _shape_ints(ctx, shape_blob, nodes)
    if _batched(ctx, x):
        if length < 2:
            raise refused(layer, "reshaping a blob that carries the batch to rank 1")
        # Per example the target's axis 0 is the batch of one: copy the batch there.
        rest, target = ctx.fresh("rest"), ctx.fresh("target")
        nodes.append(
            ctx.node(
                "Slice",
                [shape, ctx.int64s([1], hint="starts"), ctx.int64s([_INT64_MAX], hint="ends")],
                [rest],
            )
        )
        nodes.append(ctx.node("Concat", [ctx.int64s([0], hint="copy"), rest], [target], axis=0))
        shape = target
    nodes.append(ctx.node("Reshape", [x, shape], [y]))
    ctx.set_rank(y, length)
    return nodes


def _broadcast(layer: Any, ctx: ConvertContext, x: str, shape: str, rank: int, nodes: list) -> list:
    y = layer.output[0]
    nodes.append(ctx.node("Expand", [x, shape], [y]))
    ctx.set_rank(y, max(rank, ctx.rank(x)))
    return nodes


@converts("broadcastToLike")
def convert_broadcast_to_like(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The first input broadcast to the second input's shape."""
    check_io(layer, inputs=2)
    x, ref = layer.input
    shape = ctx.fresh("shape")
    return _broadcast(layer, ctx, x, shape, ctx.rank(ref), [ctx.node("Shape", [ref], [shape])])


@converts("broadcastToStatic")
def convert_broadcast_to_static(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The input broadcast to ``targetShape`` (a 1 on the batch axis keeps the batch)."""
    check_io(layer)
    target = [int(d) for d in layer.broadcastToStatic.targetShape]
    if not target:
        raise invalid(layer, "targetShape is empty")
    shape = ctx.int64s(target, hint="target")
    return _broadcast(layer, ctx, layer.input[0], shape, len(target), [])


@converts("broadcastToDynamic")
def convert_broadcast_to_dynamic(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """The first input broadcast to the shape the second holds."""
    check_io(layer, inputs=2)
    x, shape_blob = layer.input
    length = _length(layer, ctx, shape_blob)
    nodes: list[onnx.NodeProto] = []
    shape = _shape_ints(ctx, shape_blob, nodes)
    return _broadcast(layer, ctx, x, shape, length, nodes)


@converts("sliceDynamic")
def convert_slice_dynamic(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """NumPy-style slicing with begin (and end, strides) given as inputs; masks as
    parameters. Axis 0 (the batch) is kept whole."""
    check_io(layer, inputs=(2, 7))
    if len(layer.input) > 4:
        raise refused(layer, "masks given as inputs (only beginIds, endIds and strides may be)")
    p = layer.sliceDynamic
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if rank < 2:
        raise invalid(layer, f"needs an input of rank >= 2 (batch included), got rank {rank}")
    for blob in layer.input[1:]:
        if _batched(ctx, blob) or _length(layer, ctx, blob) != rank:
            raise invalid(
                layer, f"input {blob!r} must be a constant-length vector of {rank} values"
            )
    masks = {}
    for name in ("beginMasks", "endMasks", "squeezeMasks"):
        values = [bool(v) for v in getattr(p, name)]
        if not any(values):
            values = [False] * rank  # none set (coremltools writes 5 Falses for any rank)
        if len(values) != rank:
            raise invalid(layer, f"{name} has {len(values)} values for an input of rank {rank}")
        masks[name] = values
    if masks["squeezeMasks"][0]:
        raise refused(layer, "squeezing the batch axis 0")

    nodes: list[onnx.NodeProto] = []

    def ints(blob: str) -> str:
        return _shape_ints(ctx, blob, nodes)

    def param(name: str, default: int) -> str:
        values = [int(v) for v in getattr(p, name)] or [default] * rank
        if len(values) != rank:
            raise invalid(layer, f"{name} has {len(values)} values for an input of rank {rank}")
        return ctx.int64s(values, hint=name)

    begin = ints(layer.input[1])
    end = ints(layer.input[2]) if len(layer.input) > 2 else param("endIds", _INT64_MAX)
    strides = ints(layer.input[3]) if len(layer.input) > 3 else param("strides", 1)

    def op(op_type: str, inputs: list[str], hint: str) -> str:
        out = ctx.fresh(hint)
        nodes.append(ctx.node(op_type, inputs, [out]))
        return out

    def const(values) -> str:
        return ctx.int64s(values, hint="const")

    def flags(values: list[bool]) -> str:
        return ctx.const(np.asarray(values, dtype=bool), hint="mask")

    forward = op("Greater", [strides, const([0])], "forward")
    begin_default = op("Where", [forward, const([0]), const([_INT64_MAX])], "begin_default")
    end_default = op("Where", [forward, const([_INT64_MAX]), const([_INT64_MIN])], "end_default")
    starts = op("Where", [flags(masks["beginMasks"]), begin_default, begin], "starts")
    ends = op("Where", [flags(masks["endMasks"]), end_default, end], "ends")
    squeezed = [a for a in range(rank) if masks["squeezeMasks"][a]]
    if squeezed:
        # A squeezed axis keeps the one element at its begin index.
        last = op("Equal", [starts, const([-1])], "is_last")
        after = op("Add", [starts, const([1])], "after")
        one_past = op("Where", [last, const([_INT64_MAX]), after], "one_past")
        ends = op("Where", [flags(masks["squeezeMasks"]), one_past, ends], "ends_sq")
        strides = op("Where", [flags(masks["squeezeMasks"]), const([1]), strides], "steps_sq")
    # Axis 0 is the batch: slice the others.
    tail = [const([1]), const([_INT64_MAX])]
    starts, ends, strides = (op("Slice", [v, *tail], "tail") for v in (starts, ends, strides))
    axes = ctx.int64s(list(range(1, rank)), hint="axes")
    ctx.set_rank(y, rank - len(squeezed))
    if not squeezed:
        nodes.append(ctx.node("Slice", [x, starts, ends, axes, strides], [y]))
        return nodes
    sliced = op("Slice", [x, starts, ends, axes, strides], "sliced")
    nodes.append(ctx.node("Squeeze", [sliced, ctx.int64s(squeezed, hint="axes")], [y]))
    return nodes
