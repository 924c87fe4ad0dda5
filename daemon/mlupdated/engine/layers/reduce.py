"""Converters for the reduction layers: classic ``reduce``, the ND ``reduce*`` family,
and ``argMax``/``argMin``.

Classic ``reduce`` works on the trailing C/H/W axes and keeps them (as size 1). The ND
layers take explicit ``axes`` in the blob's Core ML rank; since every blob carries the
batch as axis 0 and Core ML runs each example with a batch of one there, a reduction
that names axis 0 reduces a size-1 axis: per example it changes nothing (or applies
the one-element form of the reduction, like ``|x|`` for L1). ``reduceAll`` therefore
reduces every axis but the batch; without ``keepDims`` its result has shape ``[N]``.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError, UnsupportedLayerError
from ..registry import ConvertContext, converts
from ._common import one_input

DEFAULT_EPSILON = 1e-6  # proto: "Defaults to 1e-6 if not set or is set to 0"

# Classic ReduceLayerParams.ReduceAxis -> negative axes.
_CLASSIC_AXES = {0: (-3, -2, -1), 1: (-2, -1), 2: (-3,), 3: (-2,), 4: (-1,)}
_CLASSIC_AXIS_NAMES = {0: "CHW", 1: "HW", 2: "C", 3: "H", 4: "W"}

# Classic ReduceLayerParams.ReduceOperation -> ONNX op (LOGSUM and ARGMAX are special).
_CLASSIC_OPS = {
    0: "ReduceSum",  # SUM
    1: "ReduceMean",  # AVG
    2: "ReduceProd",  # PROD
    4: "ReduceSumSquare",  # SUMSQUARE
    5: "ReduceL1",  # L1
    6: "ReduceL2",  # L2
    7: "ReduceMax",  # MAX
    8: "ReduceMin",  # MIN
}
_LOGSUM = 3
_ARGMAX = 9

# ND layer oneof name -> ONNX op.
_ND_OPS = {
    "reduceL1": "ReduceL1",
    "reduceL2": "ReduceL2",
    "reduceMax": "ReduceMax",
    "reduceMin": "ReduceMin",
    "reduceSum": "ReduceSum",
    "reduceProd": "ReduceProd",
    "reduceMean": "ReduceMean",
    "reduceLogSum": "ReduceLogSum",
    "reduceSumSquare": "ReduceSumSquare",
    "reduceLogSumExp": "ReduceLogSumExp",
}

# What a reduction over one element is, per example: the op applied elementwise.
_ONE_ELEMENT = {
    "ReduceL1": "Abs",
    "ReduceL2": "Abs",
    "ReduceLogSum": "Log",
}


def reduce_node(
    ctx: ConvertContext, op_type: str, source: str, target: str, axes, *, keepdims: bool
) -> onnx.NodeProto:
    """One ONNX ``Reduce*`` node over ``axes``, written for the context's opset (axes
    are an input for ReduceSum from opset 13 and for every reduction from opset 18)."""
    axes = [int(a) for a in axes]
    if op_type == "ReduceSum" or ctx.opset >= 18:
        return ctx.node(
            op_type, [source, ctx.int64s(axes, hint="axes")], [target], keepdims=int(keepdims)
        )
    return ctx.node(op_type, [source], [target], axes=axes, keepdims=int(keepdims))


@converts("reduce")
def convert_reduce(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``reduce``: SUM/AVG/PROD/LOGSUM/SUMSQUARE/L1/L2/MAX/MIN/ARGMAX over
    C, H, W, HW or CHW; the reduced axes stay as size 1."""
    params = layer.reduce
    source, target = one_input(layer)
    if params.axis not in _CLASSIC_AXES:
        raise InvalidModelError(
            f"layer {layer.name!r}: unknown reduce axis {params.axis}", layer=layer.name
        )
    axes = _CLASSIC_AXES[params.axis]
    rank = ctx.rank(source)
    # The reduced axes must lie after the batch axis.
    if rank < len(axes) + 1 or rank < -min(axes) + 1:
        raise InvalidModelError(
            f"layer {layer.name!r}: reduce over {_CLASSIC_AXIS_NAMES[params.axis]} needs an "
            f"input of rank >= {-min(axes) + 1} (batch included), got rank {rank}",
            layer=layer.name,
        )
    ctx.set_rank(target, rank)
    mode = params.mode
    if mode == _ARGMAX:
        if len(axes) != 1:
            raise InvalidModelError(
                f"layer {layer.name!r}: ARGMAX reduces one axis (C, H or W), not "
                f"{_CLASSIC_AXIS_NAMES[params.axis]}",
                layer=layer.name,
            )
        index = ctx.fresh(f"{target}__argmax")
        # Core ML blobs are float: the index comes out as a float value.
        return [
            ctx.node("ArgMax", [source], [index], axis=axes[0], keepdims=1),
            ctx.node("Cast", [index], [target], to=onnx.TensorProto.FLOAT),
        ]
    if mode == _LOGSUM:
        epsilon = params.epsilon if params.epsilon != 0 else DEFAULT_EPSILON
        shifted = ctx.fresh(f"{target}__shifted")
        logs = ctx.fresh(f"{target}__log")
        return [
            ctx.node(
                "Add", [source, ctx.const(epsilon, hint="epsilon", dtype="float32")], [shifted]
            ),
            ctx.node("Log", [shifted], [logs]),
            reduce_node(ctx, "ReduceSum", logs, target, axes, keepdims=True),
        ]
    if mode not in _CLASSIC_OPS:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: reduce mode {mode} is not supported",
            layer=layer.name,
            layer_type="reduce",
        )
    return [reduce_node(ctx, _CLASSIC_OPS[mode], source, target, axes, keepdims=True)]


@converts(*_ND_OPS)
def convert_reduce_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """ND reductions (``reduceSum``, ``reduceMean``…) over ``axes`` or all axes."""
    layer_type = layer.WhichOneof("layer")
    params = getattr(layer, layer_type)
    op_type = _ND_OPS[layer_type]
    source, target = one_input(layer)
    rank = ctx.rank(source)
    if params.reduceAll:
        axes = set(range(rank))
    else:
        if not params.axes:
            raise InvalidModelError(
                f"layer {layer.name!r} ({layer_type}) has neither axes nor reduceAll",
                layer=layer.name,
            )
        axes = set()
        for axis in params.axes:
            if not -rank <= axis < rank:
                raise InvalidModelError(
                    f"layer {layer.name!r} ({layer_type}): axis {axis} is out of range for "
                    f"an input of rank {rank}",
                    layer=layer.name,
                )
            axes.add(axis % rank)
    all_axes = axes == set(range(rank))
    keep = bool(params.keepDims)
    if 0 in axes and not keep and not all_axes:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({layer_type}) reduces the batch axis 0 without keepDims, "
            "which would drop the batch",
            layer=layer.name,
            layer_type=layer_type,
        )
    inner = sorted(axes - {0})
    if all_axes and not keep:
        # Core ML's result is [1] per example; ours is [N].
        ctx.set_rank(target, 1)
    else:
        ctx.set_rank(target, rank - (0 if keep else len(inner)))
    if inner:
        # Reducing the size-1 batch axis as well changes nothing.
        return [reduce_node(ctx, op_type, source, target, inner, keepdims=keep)]
    # Only the batch axis: the reduction of one element, applied elementwise.
    if op_type == "ReduceSumSquare":
        return [ctx.node("Mul", [source, source], [target])]
    return [ctx.node(_ONE_ELEMENT.get(op_type, "Identity"), [source], [target])]


@converts("argMax", "argMin")
def convert_arg_extreme(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """ND ``argMax``/``argMin`` along ``axis``: the index, as a float blob, of the first
    largest/smallest value; ``removeDim`` drops the axis (unless the input is 1-D)."""
    layer_type = layer.WhichOneof("layer")
    params = getattr(layer, layer_type)
    source, target = one_input(layer)
    rank = ctx.rank(source)
    if not -rank <= params.axis < rank:
        raise InvalidModelError(
            f"layer {layer.name!r} ({layer_type}): axis {params.axis} is out of range for an "
            f"input of rank {rank}",
            layer=layer.name,
        )
    axis = params.axis % rank
    remove = bool(params.removeDim) and rank > 1
    if axis == 0:
        if remove:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({layer_type}) removes the batch axis 0",
                layer=layer.name,
                layer_type=layer_type,
            )
        # Per example the batch axis has one element: its index is 0.
        shape = ctx.fresh(f"{target}__shape")
        ctx.set_rank(target, rank)
        zero = onnx.helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0])
        return [
            ctx.node("Shape", [source], [shape]),
            ctx.node("ConstantOfShape", [shape], [target], value=zero),
        ]
    index = ctx.fresh(f"{target}__index")
    ctx.set_rank(target, rank - 1 if remove else rank)
    op_type = "ArgMax" if layer_type == "argMax" else "ArgMin"
    return [
        ctx.node(op_type, [source], [index], axis=axis, keepdims=0 if remove else 1),
        ctx.node("Cast", [index], [target], to=onnx.TensorProto.FLOAT),
    ]
