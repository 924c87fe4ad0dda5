"""Converters for slicing and splitting: classic ``slice`` and ``split`` (C, H or W
axes), ``sliceStatic`` and ``splitND`` (any axis but the batch).

Slices follow NumPy's rules (negative indices count from the end, ends past the axis
clamp, masks mean "from the start"/"to the end" in the stride's direction). The batch
axis 0 is never cut: Core ML sees it as an axis of size 1, so a slice of it that keeps
its single element is a no-op here and any other is refused. ``sliceDynamic`` (indices
given as blobs) is not converted.
"""

from __future__ import annotations

from typing import Any

import onnx

from ..registry import ConvertContext, converts
from ._common import invalid, one_input, refused

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
# Classic SliceLayerParams.SliceAxis -> negative axis.
_CLASSIC_AXES = {0: -3, 1: -2, 2: -1}


def _slice_node(ctx: ConvertContext, source: str, target: str, starts, ends, axes, steps):
    return ctx.node(
        "Slice",
        [
            source,
            ctx.int64s(starts, hint="starts"),
            ctx.int64s(ends, hint="ends"),
            ctx.int64s(axes, hint="axes"),
            ctx.int64s(steps, hint="steps"),
        ],
        [target],
    )


@converts("slice")
def convert_slice(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``x[..., start:end:stride]`` along C, H or W."""
    source, target = one_input(layer)
    params = layer.slice
    if params.axis not in _CLASSIC_AXES:
        raise invalid(layer, f"unknown slice axis {params.axis}")
    axis = _CLASSIC_AXES[params.axis]
    rank = ctx.rank(source)
    if rank < 1 - axis:
        raise invalid(
            layer,
            f"slicing axis {axis} needs an input of rank >= {1 - axis} "
            f"(batch included), got rank {rank}",
        )
    if params.stride < 1:
        raise invalid(layer, f"stride must be positive, got {params.stride}")
    ctx.set_rank(target, rank)
    return [
        _slice_node(
            ctx, source, target, [params.startIndex], [params.endIndex], [axis], [params.stride]
        )
    ]


def _batch_axis_kept(begin: int, begin_mask: bool, end: int, end_mask: bool, stride: int) -> bool:
    # Core ML's axis 0 has size 1: does this slice keep its one element?
    start = None if begin_mask else begin
    stop = None if end_mask else end
    return len(range(1)[slice(start, stop, stride)]) == 1


@converts("sliceStatic")
def convert_slice_static(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """NumPy-style ``x[b0:e0:s0, b1:e1:s1, ...]`` with begin/end/squeeze masks."""
    source, target = one_input(layer)
    params = layer.sliceStatic
    rank = ctx.rank(source)
    begins, ends, strides = list(params.beginIds), list(params.endIds), list(params.strides)
    begin_masks = list(params.beginMasks) or [False] * rank
    end_masks = list(params.endMasks) or [False] * rank
    squeeze_masks = list(params.squeezeMasks) or [False] * rank
    for name, values in (
        ("beginIds", begins),
        ("endIds", ends),
        ("strides", strides),
        ("beginMasks", begin_masks),
        ("endMasks", end_masks),
        ("squeezeMasks", squeeze_masks),
    ):
        if len(values) != rank:
            raise invalid(layer, f"{name} has {len(values)} values for an input of rank {rank}")
    if 0 in strides:
        raise invalid(layer, "a stride of 0")
    if squeeze_masks[0]:
        raise refused(layer, "squeezing the batch axis 0")
    if not _batch_axis_kept(begins[0], begin_masks[0], ends[0], end_masks[0], strides[0]):
        raise refused(layer, "the slice of the batch axis 0 would be empty")
    starts_out, ends_out, axes_out, steps_out, squeezed = [], [], [], [], []
    for axis in range(1, rank):
        if squeeze_masks[axis]:
            # Only beginIds counts: one element, then the axis goes.
            begin = begins[axis]
            start, end, step = begin, (begin + 1 if begin != -1 else _INT64_MAX), 1
            squeezed.append(axis)
        else:
            step = strides[axis]
            if begin_masks[axis]:
                start = 0 if step > 0 else _INT64_MAX
            else:
                start = begins[axis]
            if end_masks[axis]:
                end = _INT64_MAX if step > 0 else _INT64_MIN
            else:
                end = ends[axis]
            if start == 0 and end == _INT64_MAX and step == 1:
                continue  # the whole axis
        starts_out.append(start)
        ends_out.append(end)
        axes_out.append(axis)
        steps_out.append(step)
    ctx.set_rank(target, rank - len(squeezed))
    if not axes_out:
        return [ctx.node("Identity", [source], [target])]
    if not squeezed:
        return [_slice_node(ctx, source, target, starts_out, ends_out, axes_out, steps_out)]
    sliced = ctx.fresh(f"{target}__sliced")
    return [
        _slice_node(ctx, source, sliced, starts_out, ends_out, axes_out, steps_out),
        ctx.node("Squeeze", [sliced, ctx.int64s(squeezed, hint="axes")], [target]),
    ]


def _split(
    layer: Any, ctx: ConvertContext, source: str, axis: int, sizes: list[int]
) -> list[onnx.NodeProto]:
    rank = ctx.rank(source)
    for output in layer.output:
        ctx.set_rank(output, rank)
    return [
        ctx.node("Split", [source, ctx.int64s(sizes, hint="split")], list(layer.output), axis=axis)
    ]


def _uniform_sizes(
    layer: Any, ctx: ConvertContext, source: str, axis: int, parts: int
) -> list[int]:
    # ONNX Split at this opset needs the sizes; the axis length is known at compile time.
    length = ctx.static_shape(source)[axis]
    if length is None:
        raise refused(layer, f"the length of axis {axis} is not known at compile time")
    if length % parts:
        raise invalid(
            layer, f"axis {axis} of length {length} does not split into {parts} equal parts"
        )
    return [length // parts] * parts


@converts("split")
def convert_split(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``nOutputs`` equal parts along the channel axis."""
    if len(layer.input) != 1 or len(layer.output) < 1:
        raise invalid(layer, "needs 1 input and at least 1 output")
    source = layer.input[0]
    parts = int(layer.split.nOutputs) or len(layer.output)
    if parts != len(layer.output):
        raise invalid(layer, f"nOutputs is {parts} but the layer has {len(layer.output)} outputs")
    rank = ctx.rank(source)
    if rank < 4:
        raise invalid(
            layer,
            f"splitting channels needs an input of rank >= 4 (batch included), got rank {rank}",
        )
    return _split(layer, ctx, source, -3, _uniform_sizes(layer, ctx, source, -3, parts))


@converts("splitND")
def convert_split_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Split along ``axis`` into ``splitSizes`` or ``numSplits`` equal parts."""
    if len(layer.input) != 1 or len(layer.output) < 1:
        raise invalid(layer, "needs 1 input and at least 1 output")
    source = layer.input[0]
    params = layer.splitND
    rank = ctx.rank(source)
    if not -rank <= params.axis < rank:
        raise invalid(layer, f"axis {params.axis} is out of range for rank {rank}")
    axis = params.axis % rank
    if axis == 0:
        raise refused(layer, "splitting the batch axis 0")
    if params.splitSizes:
        sizes = [int(s) for s in params.splitSizes]
    else:
        parts = int(params.numSplits) or len(layer.output)
        sizes = _uniform_sizes(layer, ctx, source, axis, parts)
    if len(sizes) != len(layer.output):
        raise invalid(layer, f"{len(sizes)} parts but {len(layer.output)} outputs")
    return _split(layer, ctx, source, axis, sizes)
