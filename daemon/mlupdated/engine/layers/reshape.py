"""Converters for the reshape family: ``flatten``, ``flattenTo2D``, ``reshape``,
``reshapeStatic``, ``rankPreservingReshape``, ``reshapeLike``, ``permute``,
``transpose``, ``squeeze``, ``expandDims`` and ``copy`` — with the rank bookkeeping.

ND target shapes carry the batch at axis 0 (coremltools writes a 1 there); the
compiled graph copies the real batch into that place instead, so a graph compiled
from a batch-1 spec runs any batch size.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from ._common import check_io, invalid, nd_axis, refused, same_rank_output

# FlattenLayerParams.FlattenOrder / ReshapeLayerParams.ReshapeOrder values.
CHANNEL_FIRST, CHANNEL_LAST = 0, 1
_NCHW_TO_NHWC = [0, 2, 3, 1]
_NHWC_TO_NCHW = [0, 3, 1, 2]


def _batch_shape(layer: Any, target: list[int]) -> list[int]:
    """A Core ML ND target shape with its batch axis replaced by "copy the input's"."""
    if not target:
        raise invalid(layer, "targetShape is empty")
    if len(target) == 1:
        return target
    return [0, *target[1:]]


@converts("flatten")
def convert_flatten(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``flatten`` to ``[N, C*H*W, 1, 1]`` in channel-first or channel-last order."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    flat = ctx.fresh("flat")
    source = x
    nodes = []
    if rank == 5 and ctx.classic_sequences:
        # [N, Seq, C, H, W] → [N, Seq, C*H*W, 1, 1], each step flattened.
        ctx.set_rank(y, 5)
        if layer.flatten.mode == CHANNEL_LAST:
            source = ctx.fresh("nhwc")
            nodes.append(ctx.node("Transpose", [x], [source], perm=[0, 1, 3, 4, 2]))
        return [
            *nodes,
            ctx.node("Reshape", [source, ctx.int64s([0, 0, -1], hint="shape")], [flat]),
            ctx.node("Unsqueeze", [flat, ctx.int64s([3, 4], hint="axes")], [y]),
        ]
    ctx.set_rank(y, 4)
    if layer.flatten.mode == CHANNEL_LAST and rank == 4:
        source = ctx.fresh("nhwc")
        nodes.append(ctx.node("Transpose", [x], [source], perm=_NCHW_TO_NHWC))
    nodes += [
        ctx.node("Flatten", [source], [flat], axis=1),
        ctx.node("Unsqueeze", [flat, ctx.int64s([2, 3], hint="axes")], [y]),
    ]
    return nodes


@converts("flattenTo2D")
def convert_flatten_to_2d(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``flattenTo2D``: the axes before and after ``axis`` each flattened into one."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    axis = int(layer.flattenTo2D.axis)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        raise invalid(layer, f"axis {layer.flattenTo2D.axis} is outside a rank-{rank} input")
    ctx.set_rank(y, 2)
    return [ctx.node("Flatten", [x], [y], axis=axis)]


@converts("reshape")
def convert_reshape(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``reshape`` to a target shape, in channel-first or channel-last order."""
    check_io(layer)
    p = layer.reshape
    x, y = layer.input[0], layer.output[0]
    target = [int(v) for v in p.targetShape]
    if len(target) == 4:
        if target[0] != 1:
            raise invalid(layer, "a sequence axis other than 1 in targetShape is not supported")
        target = target[1:]
    if len(target) != 3:
        raise invalid(layer, f"targetShape {list(p.targetShape)} must be [C, H, W] or [1, C, H, W]")
    ctx.set_rank(y, 4)
    if p.mode != CHANNEL_LAST:
        return [ctx.node("Reshape", [x, ctx.int64s([0, *target], hint="shape")], [y])]
    # Channel-last: reshape the HWC-ordered data, then bring channels back first.
    c, h, w = target
    source, nhwc = x, ctx.fresh("nhwc_out")
    nodes = []
    if ctx.rank(x) == 4:
        source = ctx.fresh("nhwc_in")
        nodes.append(ctx.node("Transpose", [x], [source], perm=_NCHW_TO_NHWC))
    nodes += [
        ctx.node("Reshape", [source, ctx.int64s([0, h, w, c], hint="shape")], [nhwc]),
        ctx.node("Transpose", [nhwc], [y], perm=_NHWC_TO_NCHW),
    ]
    return nodes


@converts("reshapeStatic", "rankPreservingReshape")
def convert_reshape_static(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``reshapeStatic``/``rankPreservingReshape`` to a stored shape; the batch is kept."""
    check_io(layer, inputs=(1, 2) if layer.WhichOneof("layer") == "rankPreservingReshape" else 1)
    params = getattr(layer, layer.WhichOneof("layer"))
    x, y = layer.input[0], layer.output[0]
    target = [int(v) for v in params.targetShape]
    if layer.WhichOneof("layer") == "rankPreservingReshape" and len(target) != ctx.rank(x):
        raise invalid(layer, "rankPreservingReshape must keep the rank")
    ctx.set_rank(y, len(target))
    shape = ctx.int64s(_batch_shape(layer, target), hint="shape")
    return [ctx.node("Reshape", [x, shape], [y])]


@converts("reshapeLike")
def convert_reshape_like(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``reshapeLike``: the first input reshaped to the second input's shape."""
    check_io(layer, inputs=2)
    x, ref = layer.input
    y = layer.output[0]
    shape = ctx.fresh("shape")
    ctx.set_rank(y, ctx.rank(ref))
    return [ctx.node("Shape", [ref], [shape]), ctx.node("Reshape", [x, shape], [y])]


@converts("permute")
def convert_permute(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``permute`` of the (Seq, C, H, W) axes of Core ML's rank-5 blob.

    ``axis[i]`` names the input axis (0 = Seq, 1 = C, 2 = H, 3 = W) that becomes output
    axis ``i``; the batch never moves (see ``sequence_blob`` for where Seq lives).
    A permutation that leaves a sequence of one behind comes back as ``[N, C, H, W]``.
    """
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    axes = [int(a) for a in layer.permute.axis] or [0, 1, 2, 3]
    if sorted(axes) != [0, 1, 2, 3]:
        raise invalid(layer, f"axis {axes} is not a permutation of [0, 1, 2, 3] (Seq, C, H, W)")
    rank = ctx.rank(x)
    if rank not in (4, 5):
        raise invalid(layer, f"input must be [N, C, H, W] or [N, Seq, C, H, W], got rank {rank}")
    if rank == 4 and axes[0] == 0:
        ctx.set_rank(y, 4)
        return [ctx.node("Transpose", [x], [y], perm=axes)]
    nodes: list[onnx.NodeProto] = []
    source = sequence_blob(ctx, x, nodes)
    perm = [0, *(1 + a for a in axes)]
    shape = _known_shape(ctx, x)
    seq_after = None
    if shape is not None:
        in5 = shape if rank == 5 else [shape[0], 1, *shape[1:]]
        seq_after = in5[perm[1]]
    if seq_after != 1:
        ctx.set_rank(y, 5)
        return [*nodes, ctx.node("Transpose", [source], [y], perm=perm)]
    moved = ctx.fresh("permuted")
    nodes.append(ctx.node("Transpose", [source], [moved], perm=perm))
    nodes.append(ctx.node("Squeeze", [moved, ctx.int64s([1], hint="axes")], [y]))
    ctx.set_rank(y, 4)
    return nodes


def _known_shape(ctx: ConvertContext, blob: str) -> list[int | None] | None:
    try:
        return ctx.static_shape(blob)
    except InvalidModelError:
        return None


def sequence_blob(ctx: ConvertContext, blob: str, nodes: list[onnx.NodeProto]) -> str:
    """A classic blob in its ``[N, Seq, C, H, W]`` form.

    Core ML's classic layers work on rank-5 ``[Seq, B, C, H, W]`` blobs. The engine
    writes a blob whose sequence is one as ``[N, C, H, W]``, and one with a real
    sequence (from a sequence input, a permute that moves Seq, a recurrent layer) as
    ``[N, Seq, C, H, W]``: the batch stays on axis 0 and C, H, W stay the last three
    axes, so the classic layers that count axes from the end need not know.
    """
    if ctx.rank(blob) == 5:
        return blob
    if ctx.rank(blob) != 4:
        raise InvalidModelError(f"blob {blob!r} is not a classic [N, C, H, W] blob")
    out = ctx.fresh(f"{blob}__seq")
    nodes.append(ctx.node("Unsqueeze", [blob, ctx.int64s([1], hint="axes")], [out]))
    return out


@converts("transpose")
def convert_transpose(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """ND ``transpose``: ``axes`` permute all the input's axes and keep the batch first."""
    check_io(layer)
    rank = ctx.rank(layer.input[0])
    axes = [int(a) for a in layer.transpose.axes]
    if sorted(axes) != list(range(rank)):
        raise invalid(layer, f"axes {axes} are not a permutation of a rank-{rank} input")
    if axes[0] != 0:
        raise refused(layer, f"axes {axes} move the batch axis 0, which is not supported")
    same_rank_output(layer, ctx)
    return [ctx.node("Transpose", [layer.input[0]], [layer.output[0]], perm=axes)]


@converts("squeeze")
def convert_squeeze(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``squeeze`` of the given size-1 axes (or all of them but the batch)."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if layer.squeeze.squeezeAll:
        shape = ctx.static_shape(x)
        # The batch axis is never squeezed away, whatever its size in the spec.
        axes = [a for a in range(1, rank) if shape[a] == 1]
    else:
        axes = sorted({nd_axis(layer, int(a), rank) for a in layer.squeeze.axes})
    if 0 in axes:
        raise invalid(layer, "squeezing the batch axis is not supported")
    ctx.set_rank(y, rank - len(axes))
    if not axes:
        return [ctx.node("Identity", [x], [y])]
    return [ctx.node("Squeeze", [x, ctx.int64s(axes, hint="axes")], [y])]


@converts("expandDims")
def convert_expand_dims(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``expandDims``: new size-1 axes at the given positions."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    out_rank = rank + len(layer.expandDims.axes)
    axes = sorted({nd_axis(layer, int(a), out_rank) for a in layer.expandDims.axes})
    if not axes:
        raise invalid(layer, "axes is empty")
    if axes[0] == 0:
        # New axes in front of the batch: per example every axis up to the input's own
        # axis 0 has size 1, so the batch can stay first and a size-1 axis follow it.
        kept = min(set(range(out_rank)) - set(axes))
        axes = sorted({*axes[1:], kept})
    ctx.set_rank(y, out_rank)
    return [ctx.node("Unsqueeze", [x, ctx.int64s(axes, hint="axes")], [y])]


@converts("copy")
def convert_copy(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``copy``: the input unchanged under the output's name."""
    check_io(layer)
    same_rank_output(layer, ctx)
    return [ctx.node("Identity", [layer.input[0]], [layer.output[0]])]
