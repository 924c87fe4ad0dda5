"""Small helpers shared by the layer converters (inputs/outputs checks, axes)."""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError, UnsupportedLayerError
from ..registry import ConvertContext


def layer_type(layer: Any) -> str:
    return str(layer.WhichOneof("layer"))


def invalid(layer: Any, message: str) -> InvalidModelError:
    """An InvalidModelError naming the layer and its type."""
    return InvalidModelError(
        f"layer {layer.name!r} ({layer_type(layer)}): {message}", layer=layer.name
    )


def refused(layer: Any, message: str) -> UnsupportedLayerError:
    """An UnsupportedLayerError naming the layer and its type, with ``message``."""
    return UnsupportedLayerError(
        f"layer {layer.name!r} ({layer_type(layer)}): {message}",
        layer=layer.name,
        layer_type=layer_type(layer),
    )


def unsupported(layer: Any, feature: str) -> UnsupportedLayerError:
    """An UnsupportedLayerError for a parameter value the engine does not run."""
    return UnsupportedLayerError(
        f"layer {layer.name!r} ({layer_type(layer)}) uses {feature}, which mlupdated cannot run",
        layer=layer.name,
        layer_type=layer_type(layer),
    )


def check_io(layer: Any, *, inputs: int | tuple[int, int | None] = 1, outputs: int = 1) -> None:
    """Check the number of inputs (exact, or a (min, max) range) and outputs."""
    lo, hi = (inputs, inputs) if isinstance(inputs, int) else inputs
    n = len(layer.input)
    if n < lo or (hi is not None and n > hi):
        want = str(lo) if lo == hi else f"{lo}..{hi if hi is not None else ''}"
        raise invalid(layer, f"takes {want} input(s), has {n}")
    if len(layer.output) != outputs:
        raise invalid(layer, f"produces {outputs} output(s), has {len(layer.output)}")


def one_input(layer: Any) -> tuple[str, str]:
    """The (input, output) blob names of a layer that takes one and produces one."""
    if len(layer.input) != 1 or len(layer.output) != 1:
        raise invalid(
            layer,
            f"needs 1 input and 1 output, has {len(layer.input)} and {len(layer.output)}",
        )
    return layer.input[0], layer.output[0]


def input_rank(layer: Any, ctx: ConvertContext, blob: str, *, minimum: int) -> int:
    """The rank of ``blob``, which ``layer`` needs to be at least ``minimum``."""
    rank = ctx.rank(blob)
    if rank < minimum:
        raise invalid(layer, f"needs an input of rank >= {minimum}, got rank {rank}")
    return rank


def channel_axis(rank: int) -> int:
    """The channel axis of a blob for classic (rank-3 Core ML) layers: ``[N, C, H, W]``
    has it at 1; a rank-2 ``[N, C]`` blob (after an ND flatten) too."""
    return rank - 3 if rank >= 4 else 1


def nd_axis(layer: Any, axis: int, rank: int) -> int:
    """A Core ML ND axis (negative counts from the end) as a non-negative ONNX axis."""
    resolved = axis + rank if axis < 0 else axis
    if not 0 <= resolved < rank:
        raise invalid(layer, f"axis {axis} is outside a rank-{rank} input")
    return resolved


def per_channel_shape(count: int, rank: int) -> tuple[int, ...]:
    """A broadcastable shape for ``count`` per-channel values against a classic blob."""
    if rank >= 4:
        return (count, 1, 1)
    return (count,)


def same_rank_output(layer: Any, ctx: ConvertContext, source: str | None = None) -> None:
    """Give the layer's (single) output the rank of its (first) input."""
    ctx.set_rank(layer.output[0], ctx.rank(source or layer.input[0]))


def align_batch(
    ctx: ConvertContext, blob: str, rank: int, target_rank: int, nodes: list[onnx.NodeProto]
) -> str:
    """Make a lower-rank operand that carries the batch broadcast per example.

    Core ML aligns shapes from the right, with a batch of one in front of each blob.
    A lower-rank blob's batch axis (of size N here) would then meet a data axis of the
    other operand; moving it back to axis 0 (``[N, 1, ..., rest]``) gives what Core ML
    computes for each example. Constants (every axis known at compile time) have no
    batch of their own and broadcast from the right unchanged.
    """
    if rank >= target_rank:
        return blob
    try:
        first = ctx.static_shape(blob)[0]
    except (InvalidModelError, IndexError):
        first = None
    if first is not None:
        return blob
    aligned = ctx.fresh(f"{blob}__aligned")
    axes = ctx.int64s(list(range(1, 1 + target_rank - rank)), hint="axes")
    nodes.append(ctx.node("Unsqueeze", [blob, axes], [aligned]))
    return aligned


def _first_axis(ctx: ConvertContext, blob: str) -> int | None:
    """The compile-time size of a blob's axis 0: ``None`` for a batched blob."""
    try:
        return ctx.static_shape(blob)[0]
    except (InvalidModelError, IndexError):
        return None


def batch_each(ctx: ConvertContext, blobs: list[str], nodes: list[onnx.NodeProto]) -> list[str]:
    """Repeat constants (a batch of one) over the batch of the other blobs.

    Layers that broadcast need nothing; a concatenation does: Core ML runs the network
    once per example, so each example meets the constant. Blobs whose axis 0 is the
    batch come back unchanged, and so does everything when no blob is batched.
    """
    firsts = [_first_axis(ctx, b) for b in blobs]
    batched = [b for b, first in zip(blobs, firsts, strict=True) if first is None]
    if not batched:
        return list(blobs)
    shape = ctx.fresh("batch_shape")
    batch = ctx.fresh("batch_size")
    nodes.append(ctx.node("Shape", [batched[0]], [shape]))
    nodes.append(
        ctx.node(
            "Slice",
            [shape, ctx.int64s([0], hint="starts"), ctx.int64s([1], hint="ends")],
            [batch],
        )
    )
    out = []
    for blob, first in zip(blobs, firsts, strict=True):
        if first != 1:
            out.append(blob)
            continue
        rest = ctx.static_shape(blob)[1:]
        target = ctx.fresh(f"{blob}__shape")
        nodes.append(ctx.node("Concat", [batch, ctx.int64s(rest, hint="rest")], [target], axis=0))
        expanded = ctx.fresh(f"{blob}__batched")
        nodes.append(ctx.node("Expand", [blob, target], [expanded]))
        out.append(expanded)
    return out
