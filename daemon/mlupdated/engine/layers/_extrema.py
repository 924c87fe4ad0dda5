"""Scatter modes MAX and MIN (``scatter``, ``scatterAlongAxis``, ``scatterND``) in ONNX
opset 17, which has no max or min reduction for its scatter operators (opset 18 does).

They are written out: each update is compared with every position of the scattered axis
(a one-hot mask of the indices), the updates that land on a position are reduced to
their largest (smallest), and that is compared with the container's own value, as Core
ML does (``output[i] = max(output[i], update)`` for every update aimed at ``i``). The
mask costs memory in proportion to updates × positions, which suits the small tables
such layers scatter into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import ConvertContext
from ._common import refused

# ScatterMode MAX, MIN -> (ONNX reduction over the updates, elementwise op with the
# container, the value where no update lands).
_MAX, _MIN = 5, 6
_EXTREMA = {_MAX: ("ReduceMax", "Max", -np.inf), _MIN: ("ReduceMin", "Min", np.inf)}


class _Nodes:
    """Appends nodes to ``nodes``, each writing a fresh blob, and returns that blob."""

    def __init__(self, ctx: ConvertContext, nodes: list) -> None:
        self.ctx, self.nodes = ctx, nodes

    def __call__(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.ctx.fresh(hint)
        self.nodes.append(self.ctx.node(op, inputs, [out], **attrs))
        return out

    def wrapped(self, indices: str, sizes: str) -> str:
        """Negative indices counted from the end of axes of ``sizes``."""
        zero = self.ctx.const(np.int64(0), hint="zero")
        negative = self("Less", [indices, zero], "negative")
        return self("Where", [negative, self("Add", [indices, sizes], "wrapped"), indices], "index")


def extremum(
    ctx: ConvertContext,
    layer: Any,
    front: tuple[str, str, str],
    rank: int,
    nodes: list,
    *,
    per_element: bool = False,
) -> str:
    """Scatter MAX or MIN with the scattered axis in front: ``front`` is the container
    ``[J, *rest]`` (rank ``rank``), the indices (int64, negative ones count from the end:
    ``[K]``, one per slice, or ``[K, *rest]``, one per element with ``per_element``) and
    the updates ``[K, *rest]``; returns the container with each position that updates
    land on replaced by the largest (smallest) of its value and theirs."""
    container, indices, updates = front
    reduce_op, combine_op, fill = _EXTREMA[getattr(layer, layer.WhichOneof("layer")).mode]
    add = _Nodes(ctx, nodes)
    size = add("Squeeze", [add("Shape", [container], "shape", start=0, end=1)], "size")
    one = ctx.const(np.int64(1), hint="one")
    positions = add("Range", [ctx.const(np.int64(0), hint="zero"), size, one], "positions")
    axes = [1] if per_element else list(range(1, rank + 1))
    column = add("Unsqueeze", [add.wrapped(indices, size), ctx.int64s(axes, hint="axes")], "column")
    row_shape = ctx.int64s([1, -1, *[1] * (rank - 1)], hint="row_shape")
    row = add("Reshape", [positions, row_shape], "position_row")
    lands = add("Equal", [column, row], "lands")  # [K, J, ...]: update k lands on position j
    spread = add("Unsqueeze", [updates, ctx.int64s([1], hint="axes")], "updates_spread")
    nothing = ctx.const(np.float32(fill), hint="nothing")
    candidates = add("Where", [lands, spread, nothing], "candidates")  # [K, J, *rest]
    reduced = add(reduce_op, [candidates], "reduced", axes=[0], keepdims=0)
    return add(combine_op, [container, reduced], "scattered")


def flat_front(
    ctx: ConvertContext, container: str, indices: str, updates: str, nodes: list
) -> tuple[str, str, str]:
    """Slices scattered along the front axis, with indices of any rank flattened to
    ``[K]`` and the updates to ``[K, *rest]``."""
    add = _Nodes(ctx, nodes)
    flat_indices = add("Reshape", [indices, ctx.int64s([-1], hint="flat")], "indices_flat")
    rest = add("Shape", [container], "rest_shape", start=1)
    flat_shape = add("Concat", [ctx.int64s([-1], hint="minus_one"), rest], "updates_shape", axis=0)
    return container, flat_indices, add("Reshape", [updates, flat_shape], "updates_flat")


def same_shape_off_axis(
    ctx: ConvertContext, layer: Any, container: str, indices: str, axis: int
) -> None:
    """MAX and MIN along an axis need indices as large as the container off ``axis``."""
    theirs, ours = ctx.static_shape(indices), ctx.static_shape(container)
    for a, (i, c) in enumerate(zip(theirs, ours, strict=False)):
        if a != axis and i is not None and c is not None and i != c:
            raise refused(
                layer,
                f"scatter mode MAX/MIN with indices of shape {theirs} smaller than the "
                f"container {ours} off axis {axis}",
            )


def extremum_nd(ctx: ConvertContext, layer: Any, blobs: tuple, nodes: list) -> str:
    """scatterND MAX/MIN: each multi-index into the container's first ``depth`` axes
    becomes one index into those axes flattened, and the scatter is along that axis.
    ``blobs``: the container, the indices as given and as int64, the updates."""
    container, idx, ints, updates = blobs
    shape = ctx.static_shape(container)
    depth = ctx.static_shape(idx)[-1]
    if depth is None or any(d is None for d in shape):
        raise refused(layer, "scatter mode MAX/MIN needs the container's shape at compile time")
    lead, rest = [int(d) for d in shape[: int(depth)]], [int(d) for d in shape[int(depth) :]]
    strides = [int(np.prod(lead[k + 1 :])) for k in range(len(lead))]
    add = _Nodes(ctx, nodes)
    index = add.wrapped(ints, ctx.const(np.asarray(lead, dtype=np.int64), hint="sizes"))
    scaled = add("Mul", [index, ctx.const(np.asarray(strides, np.int64), hint="strides")], "scaled")
    axes = ctx.int64s([-1], hint="axes")
    flat_index = add("ReduceSum", [scaled, axes], "flat_index", keepdims=0)
    flat = add("Reshape", [container, ctx.int64s([-1, *rest], hint="flat")], "container_flat")
    front = flat_front(ctx, flat, flat_index, updates, nodes)
    flat_out = extremum(ctx, layer, front, 1 + len(rest), nodes)
    return add("Reshape", [flat_out, ctx.int64s(shape, hint="shape")], "scattered")
