"""Converter for ``batchedMatmul``: NumPy-style batched matrix product of two blobs,
or of one blob with a stored ``[X1, X2]`` weight matrix (plus an optional bias).

Both operands carry the batch as axis 0 (rank >= 2); the matrices are their last two
axes and the leading axes broadcast as in NumPy, so a per-example product stays per
example (a lower-rank operand is first aligned on the batch, see ``align_batch``).
A one-input layer stores its weight matrix transposed (``[X2, X1]``, row-major), the
way coremltools writes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...coreml.weights import decode_weights
from ...errors import InvalidModelError, UnsupportedLayerError
from ..registry import ConvertContext, converts
from ._common import align_batch

_MIN_RANK = 2  # the batch axis plus at least the vector axis


def _swap_last(ctx: ConvertContext, source: str, rank: int) -> tuple[str, onnx.NodeProto]:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    swapped = ctx.fresh(f"{source}__T")
    return swapped, ctx.node("Transpose", [source], [swapped], perm=perm)


def _check_rank(layer: Any, ctx: ConvertContext, blob: str) -> int:
    rank = ctx.rank(blob)
    if rank < _MIN_RANK:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (batchedMatmul): operand {blob!r} has rank {rank}; with "
            f"the batch on axis 0 an operand needs rank >= {_MIN_RANK}",
            layer=layer.name,
            layer_type="batchedMatmul",
        )
    return rank


@converts("batchedMatmul")
def convert_batched_matmul(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = A @ B`` (transposeA/B honoured) or ``y = A @ W + bias``."""
    params = layer.batchedMatmul
    if len(layer.output) != 1 or len(layer.input) not in (1, 2):
        raise InvalidModelError(
            f"layer {layer.name!r} (batchedMatmul) needs 1 or 2 inputs and 1 output",
            layer=layer.name,
        )
    target = layer.output[0]
    if len(layer.input) == 2:
        a, b = layer.input
        rank_a, rank_b = _check_rank(layer, ctx, a), _check_rank(layer, ctx, b)
        nodes = []
        if params.transposeA:
            a, node = _swap_last(ctx, a, rank_a)
            nodes.append(node)
        if params.transposeB:
            b, node = _swap_last(ctx, b, rank_b)
            nodes.append(node)
        rank = max(rank_a, rank_b)
        a = align_batch(ctx, a, rank_a, rank, nodes)
        b = align_batch(ctx, b, rank_b, rank, nodes)
        ctx.set_rank(target, rank)
        return [*nodes, ctx.node("MatMul", [a, b], [target])]

    source = layer.input[0]
    rank = _check_rank(layer, ctx, source)
    if params.int8DynamicQuantize:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (batchedMatmul): int8DynamicQuantize is not supported",
            layer=layer.name,
            layer_type="batchedMatmul",
        )
    rows, cols = int(params.weightMatrixFirstDimension), int(params.weightMatrixSecondDimension)
    if rows == 0 or cols == 0:
        raise InvalidModelError(
            f"layer {layer.name!r} (batchedMatmul) with one input needs "
            f"weightMatrixFirstDimension and weightMatrixSecondDimension, got {rows}x{cols}",
            layer=layer.name,
        )
    # Stored as [X2, X1]; per-channel quantization runs along X2, the stored first axis.
    stored = decode_weights(
        params.weights, count=rows * cols, layer=layer.name, shape=(cols, rows)
    ).reshape(cols, rows)
    weights = ctx.const(
        np.ascontiguousarray(stored.T, dtype=np.float32), hint=f"{layer.name}/weights"
    )
    ctx.set_rank(target, rank)
    if not params.hasBias:
        return [ctx.node("MatMul", [source, weights], [target])]
    bias = ctx.weights(params.bias, (cols,), hint=f"{layer.name}/bias")
    product = ctx.fresh(f"{target}__product")
    return [
        ctx.node("MatMul", [source, weights], [product]),
        ctx.node("Add", [product, bias], [target]),
    ]
