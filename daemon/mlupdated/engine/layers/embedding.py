"""Converters for ``embedding`` (classic) and ``embeddingND``: a row lookup in a
``[outputChannels, inputDim]`` table, plus an optional bias.

Classic ``embedding`` reads ``[N, 1, 1, 1]`` (or ``[N, Seq, 1, 1, 1]``: a sentence fed
as a sequence) and writes ``[N, (Seq,) outputChannels, 1, 1]``; ``embeddingND`` reads
``[..., 1]`` and writes ``[..., embeddingSize]``. Indices arrive as floats (every Core
ML blob is float) and are truncated to integers, as Core ML does; an index outside
``[0, inputDim)`` makes onnxruntime fail the run rather than read past the table.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...coreml.weights import decode_weights
from ..registry import ConvertContext, converts
from ._common import check_io, invalid


def _table(layer: Any, ctx: ConvertContext, params: Any, rows: int, width: int) -> str:
    """The lookup table as a ``[rows (vocabulary), width (embedding)]`` initializer."""
    if rows < 1 or width < 1:
        raise invalid(layer, f"needs a non-empty table, got {width} x {rows}")
    stored = decode_weights(params.weights, count=rows * width, layer=layer.name)
    return ctx.const(stored.reshape(width, rows).T.copy(), hint=f"{layer.name}/table")


def _lookup(
    layer: Any, ctx: ConvertContext, params: Any, indices: str, width: int, out: str
) -> list[onnx.NodeProto]:
    """Cast ``indices`` to int64, gather the rows, add the bias: ``out`` is
    ``[*indices.shape, width]``."""
    rows = int(getattr(params, "inputDim", 0) or getattr(params, "vocabSize", 0))
    table = _table(layer, ctx, params, rows, width)
    as_int = ctx.fresh("indices")
    nodes = [ctx.node("Cast", [indices], [as_int], to=onnx.TensorProto.INT64)]
    if not params.hasBias:
        nodes.append(ctx.node("Gather", [table, as_int], [out], axis=0))
        return nodes
    bias = decode_weights(params.bias, count=width, layer=layer.name).reshape(width)
    gathered = ctx.fresh("rows")
    nodes.append(ctx.node("Gather", [table, as_int], [gathered], axis=0))
    nodes.append(ctx.node("Add", [gathered, ctx.const(bias, hint="bias")], [out]))
    return nodes


@converts("embedding")
def convert_embedding(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Classic ``embedding``: ``[N, (Seq,) 1, 1, 1]`` indices → ``[N, (Seq,) C, 1, 1]``."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if rank not in (4, 5):
        raise invalid(layer, f"input must be [N, 1, 1, 1] or [N, Seq, 1, 1, 1], got rank {rank}")
    params = layer.embedding
    width = int(params.outputChannels)
    squeezed, looked = ctx.fresh("indices"), ctx.fresh("embedded")
    nodes = [ctx.node("Squeeze", [x, ctx.int64s([-3, -2, -1], hint="axes")], [squeezed])]
    nodes += _lookup(layer, ctx, params, squeezed, width, looked)
    nodes.append(ctx.node("Unsqueeze", [looked, ctx.int64s([-2, -1], hint="axes")], [y]))
    ctx.set_rank(y, rank)
    return nodes


@converts("embeddingND")
def convert_embedding_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``embeddingND``: ``[..., 1]`` indices → ``[..., embeddingSize]``."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if rank < 2:
        raise invalid(layer, f"input must have rank >= 2 with a last axis of 1, got rank {rank}")
    params = layer.embeddingND
    squeezed = ctx.fresh("indices")
    nodes = [ctx.node("Squeeze", [x, ctx.int64s([-1], hint="axes")], [squeezed])]
    nodes += _lookup(layer, ctx, params, squeezed, int(params.embeddingSize), y)
    ctx.set_rank(y, rank)
    return nodes
