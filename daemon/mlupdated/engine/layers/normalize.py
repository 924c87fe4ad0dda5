"""Converters for ``mvn`` (mean-variance normalization) and ``layerNormalization``.

``mvn`` subtracts the mean over H, W (each channel) or over C, H, W
(``acrossChannels``) and, with ``normalizeVariance``, divides by
``sqrt(variance + epsilon)`` (the biased variance; epsilon 1e-6 when unset), the
form coremltools relies on when it writes a layer norm as an ``mvn``.
``layerNormalization`` normalizes over the trailing ``normalizedShape`` axes and
applies ``gamma`` and ``beta`` of that shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...coreml.weights import decode_weights
from ..registry import ConvertContext, converts
from ._common import check_io, input_rank, invalid, same_rank_output
from .reduce import reduce_node

DEFAULT_MVN_EPSILON = 1e-6


@converts("mvn")
def convert_mvn(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``mvn`` over H, W or over C, H, W; the shape is kept."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    p = layer.mvn
    axes = [-3, -2, -1] if p.acrossChannels else [-2, -1]
    input_rank(layer, ctx, x, minimum=len(axes) + 1)
    same_rank_output(layer, ctx)
    mean, centred = ctx.fresh("mean"), ctx.fresh("centred")
    nodes = [
        reduce_node(ctx, "ReduceMean", x, mean, axes, keepdims=True),
        ctx.node("Sub", [x, mean], [centred] if p.normalizeVariance else [y]),
    ]
    if not p.normalizeVariance:
        return nodes
    epsilon = p.epsilon if p.epsilon != 0 else DEFAULT_MVN_EPSILON
    squared, var, shifted, std = (ctx.fresh(h) for h in ("squared", "var", "shifted", "std"))
    nodes += [
        ctx.node("Mul", [centred, centred], [squared]),
        reduce_node(ctx, "ReduceMean", squared, var, axes, keepdims=True),
        ctx.node("Add", [var, ctx.const(np.float32(epsilon), hint="epsilon")], [shifted]),
        ctx.node("Sqrt", [shifted], [std]),
        ctx.node("Div", [centred, std], [y]),
    ]
    return nodes


@converts("layerNormalization")
def convert_layer_normalization(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``layerNormalization`` over the trailing ``normalizedShape`` axes (ONNX's
    LayerNormalization: biased variance, ``eps`` inside the square root)."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    p = layer.layerNormalization
    shape = [int(d) for d in p.normalizedShape]
    if not shape or min(shape) < 1:
        raise invalid(layer, f"normalizedShape {shape} must be non-empty and positive")
    rank = ctx.rank(x)
    if len(shape) >= rank:
        # The batch axis is never part of the normalized shape (Core ML sees a batch of one).
        raise invalid(
            layer, f"normalizedShape {shape} covers the batch axis of a rank-{rank} input"
        )
    count = int(np.prod(shape))
    gamma = decode_weights(p.gamma, count=count, layer=layer.name).reshape(shape)
    beta = decode_weights(p.beta, count=count, layer=layer.name).reshape(shape)
    same_rank_output(layer, ctx)
    return [
        ctx.node(
            "LayerNormalization",
            [x, ctx.const(gamma, hint="gamma"), ctx.const(beta, hint="beta")],
            [y],
            axis=-len(shape),
            epsilon=float(p.eps),
        )
    ]
