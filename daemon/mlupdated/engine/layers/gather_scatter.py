"""Converters for ``gather``, ``gatherAlongAxis``, ``gatherND``, ``scatter``,
``scatterAlongAxis`` and ``scatterND``.

Indices arrive as floats (every Core ML blob is) and are cast to integers; negative
indices count from the end, as in Core ML.

The batch: every blob that comes from the model's inputs carries the batch on axis 0,
while Core ML runs each example with a batch of one there; constants have no batch.
What ONNX can express per example is converted:

* indexing along an axis other than 0 of batched data with constant indices (the
  batch passes through), and for the "along axis" forms, indices and updates that
  carry the batch too;
* indexing a constant (a table) with indices that carry the batch, along axis 0
  (``gather``) or by multi-index (``gatherND``): the indices' batch leads the result;
* anything among constants only.

Indexing the batch axis itself (axis 0 of batched data, the first coordinate of a
multi-index into batched data) is refused: per example it indexes an axis of size one,
and the engine's rank bookkeeping cannot follow it.

Scatter modes MAX and MIN have no ONNX reduction before opset 18 (the engine compiles to
17); ``_extrema`` writes them out.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from ._common import batch_each, check_io, nd_axis, refused
from ._extrema import extremum, extremum_nd, flat_front, same_shape_off_axis

# ScatterMode values -> (ONNX reduction, how the updates are changed first).
_UPDATE, _ADD, _SUB, _MUL, _DIV, _MAX, _MIN = range(7)
_MODES = {
    _UPDATE: ("none", None),
    _ADD: ("add", None),
    _SUB: ("add", "Neg"),
    _MUL: ("mul", None),
    _DIV: ("mul", "Reciprocal"),
}


def _batched(ctx: ConvertContext, blob: str) -> bool:
    """Whether axis 0 of ``blob`` is the batch (not known at compile time)."""
    try:
        return ctx.static_shape(blob)[0] is None
    except (InvalidModelError, IndexError):
        return True


def _indices(ctx: ConvertContext, blob: str, nodes: list) -> str:
    out = ctx.fresh("indices")
    nodes.append(ctx.node("Cast", [blob], [out], to=onnx.TensorProto.INT64))
    return out


def _mode(layer: Any, mode: int) -> tuple[str, str | None]:
    """The ONNX reduction of a scatter mode, and the op applied to the updates first
    (MAX and MIN: see ``_extrema``)."""
    if mode in _MODES:
        return _MODES[mode]
    if mode in (_MAX, _MIN):
        return "extremum", None
    raise refused(layer, f"scatter mode {mode} is not one Core ML defines")


def _updates(ctx: ConvertContext, blob: str, change: str | None, nodes: list) -> str:
    if change is None:
        return blob
    out = ctx.fresh("updates")
    nodes.append(ctx.node(change, [blob], [out]))
    return out


# -- gather ---------------------------------------------------------------------------------


@converts("gather")
def convert_gather(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``gather(data, indices, axis)``: ``numpy.take``."""
    check_io(layer, inputs=2)
    data, idx = layer.input
    rank, idx_rank = ctx.rank(data), ctx.rank(idx)
    axis = nd_axis(layer, int(layer.gather.axis), rank)
    data_b, idx_b = _batched(ctx, data), _batched(ctx, idx)
    if data_b and idx_b:
        raise refused(
            layer, "data and indices both carry the batch; per example that is not a take"
        )
    if data_b and axis == 0:
        raise refused(layer, "gathers along the batch axis 0 of its data")
    if idx_b and axis != 0:
        raise refused(
            layer, "indices that carry the batch gather a constant along an axis other than 0"
        )
    nodes: list[onnx.NodeProto] = []
    ints = _indices(ctx, idx, nodes)
    ctx.set_rank(layer.output[0], rank - 1 + idx_rank)
    nodes.append(ctx.node("Gather", [data, ints], [layer.output[0]], axis=axis))
    return nodes


@converts("gatherAlongAxis")
def convert_gather_along_axis(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``gatherAlongAxis``: ``numpy.take_along_axis`` (ONNX GatherElements)."""
    check_io(layer, inputs=2)
    data, idx = layer.input
    rank = ctx.rank(data)
    if ctx.rank(idx) != rank:
        raise InvalidModelError(
            f"layer {layer.name!r} (gatherAlongAxis): data and indices must have the same rank",
            layer=layer.name,
        )
    axis = nd_axis(layer, int(layer.gatherAlongAxis.axis), rank)
    nodes: list[onnx.NodeProto] = []
    if axis == 0 and (_batched(ctx, data) or _batched(ctx, idx)):
        raise refused(layer, "gathers along the batch axis 0")
    data, idx = batch_each(ctx, [data, idx], nodes)
    ints = _indices(ctx, idx, nodes)
    ctx.set_rank(layer.output[0], rank)
    nodes.append(ctx.node("GatherElements", [data, ints], [layer.output[0]], axis=axis))
    return nodes


@converts("gatherND")
def convert_gather_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``gatherND`` from constant data (a table) by multi-indices."""
    check_io(layer, inputs=2)
    data, idx = layer.input
    if _batched(ctx, data):
        raise refused(
            layer, "a multi-index into data that carries the batch indexes the batch axis"
        )
    depth = ctx.static_shape(idx)[-1]
    if depth is None:
        raise refused(layer, "the length of its multi-indices is not known at compile time")
    nodes: list[onnx.NodeProto] = []
    ints = _indices(ctx, idx, nodes)
    ctx.set_rank(layer.output[0], ctx.rank(idx) - 1 + ctx.rank(data) - int(depth))
    nodes.append(ctx.node("GatherND", [data, ints], [layer.output[0]]))
    return nodes


# -- scatter --------------------------------------------------------------------------------


@converts("scatter")
def convert_scatter(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``scatter(container, indices, updates, axis, mode)``: whole slices along ``axis``
    replaced (or accumulated), as ONNX ScatterND with ``axis`` moved to the front."""
    check_io(layer, inputs=3)
    container, idx, updates = layer.input
    p = layer.scatter
    rank, idx_rank = ctx.rank(container), ctx.rank(idx)
    axis = nd_axis(layer, int(p.axis), rank)
    reduction, change = _mode(layer, p.mode)
    if _batched(ctx, idx):
        raise refused(layer, "indices that carry the batch are not supported")
    if axis == 0 and (_batched(ctx, container) or _batched(ctx, updates)):
        raise refused(layer, "scatters along the batch axis 0")
    nodes: list[onnx.NodeProto] = []
    container, updates = batch_each(ctx, [container, updates], nodes)
    ints, column = _indices(ctx, idx, nodes), ctx.fresh("index_column")
    nodes.append(ctx.node("Unsqueeze", [ints, ctx.int64s([-1], hint="axes")], [column]))
    perm_c = [axis, *(a for a in range(rank) if a != axis)]
    up_rank = rank - 1 + idx_rank
    perm_u = [*range(axis, axis + idx_rank), *range(axis), *range(axis + idx_rank, up_rank)]
    moved_c, moved_u, moved_y = (ctx.fresh(h) for h in ("container_t", "updates_t", "scattered"))
    nodes.append(ctx.node("Transpose", [container], [moved_c], perm=perm_c))
    nodes.append(
        ctx.node("Transpose", [_updates(ctx, updates, change, nodes)], [moved_u], perm=perm_u)
    )
    if reduction == "extremum":
        moved_y = extremum(ctx, layer, flat_front(ctx, moved_c, ints, moved_u, nodes), rank, nodes)
    else:
        nodes.append(
            ctx.node("ScatterND", [moved_c, column, moved_u], [moved_y], reduction=reduction)
        )
    inverse = sorted(range(rank), key=perm_c.__getitem__)
    nodes.append(ctx.node("Transpose", [moved_y], [layer.output[0]], perm=inverse))
    ctx.set_rank(layer.output[0], rank)
    return nodes


@converts("scatterAlongAxis")
def convert_scatter_along_axis(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``scatterAlongAxis``: ``numpy.put_along_axis`` (ONNX ScatterElements)."""
    check_io(layer, inputs=3)
    container, idx, updates = layer.input
    p = layer.scatterAlongAxis
    rank = ctx.rank(container)
    axis = nd_axis(layer, int(p.axis), rank)
    reduction, change = _mode(layer, p.mode)
    if axis == 0 and any(_batched(ctx, b) for b in layer.input):
        raise refused(layer, "scatters along the batch axis 0")
    nodes: list[onnx.NodeProto] = []
    container, idx, updates = batch_each(ctx, [container, idx, updates], nodes)
    ints = _indices(ctx, idx, nodes)
    if reduction == "extremum":
        same_shape_off_axis(ctx, layer, container, idx, axis)
        perm = [axis, *(a for a in range(rank) if a != axis)]
        front = [ctx.fresh(h) for h in ("container_t", "indices_t", "updates_t")]
        for blob, moved in zip((container, ints, updates), front, strict=True):
            nodes.append(ctx.node("Transpose", [blob], [moved], perm=perm))
        moved_y = extremum(ctx, layer, tuple(front), rank, nodes, per_element=True)
        inverse = sorted(range(rank), key=perm.__getitem__)
        nodes.append(ctx.node("Transpose", [moved_y], [layer.output[0]], perm=inverse))
        ctx.set_rank(layer.output[0], rank)
        return nodes
    nodes.append(
        ctx.node(
            "ScatterElements",
            [container, ints, _updates(ctx, updates, change, nodes)],
            [layer.output[0]],
            axis=axis,
            reduction=reduction,
        )
    )
    ctx.set_rank(layer.output[0], rank)
    return nodes


@converts("scatterND")
def convert_scatter_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``scatterND`` into a constant container with constant indices and updates."""
    check_io(layer, inputs=3)
    container, idx, updates = layer.input
    reduction, change = _mode(layer, layer.scatterND.mode)
    if any(_batched(ctx, b) for b in layer.input):
        raise refused(
            layer,
            "a multi-index scatter over blobs that carry the batch indexes the batch axis",
        )
    nodes: list[onnx.NodeProto] = []
    ints = _indices(ctx, idx, nodes)
    if reduction == "extremum":
        out = extremum_nd(ctx, layer, (container, idx, ints, updates), nodes)
        nodes.append(ctx.node("Identity", [out], [layer.output[0]]))
        ctx.set_rank(layer.output[0], ctx.rank(container))
        return nodes
    nodes.append(
        ctx.node(
            "ScatterND",
            [container, ints, _updates(ctx, updates, change, nodes)],
            [layer.output[0]],
            reduction=reduction,
        )
    )
    ctx.set_rank(layer.output[0], ctx.rank(container))
    return nodes
