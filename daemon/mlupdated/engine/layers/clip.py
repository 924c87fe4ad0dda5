"""Converters for the clip-like layers: ND ``clip`` and ``clampedReLU``."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import one_input


@converts("clip")
def convert_clip(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = min(max(x, minVal), maxVal)`` (ONNX Clip gives maxVal when minVal > maxVal,
    as this formula does)."""
    source, target = one_input(layer)
    params = layer.clip
    low = ctx.const(np.float32(params.minVal), hint="min")
    high = ctx.const(np.float32(params.maxVal), hint="max")
    ctx.set_rank(target, ctx.rank(source))
    return [ctx.node("Clip", [source, low, high], [target])]


@converts("clampedReLU")
def convert_clamped_relu(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y = min(beta, x)`` for ``x >= 0`` and ``min(beta, alpha*x)`` below zero."""
    source, target = one_input(layer)
    params = layer.clampedReLU
    leaky = ctx.fresh(f"{target}__leaky")
    ctx.set_rank(target, ctx.rank(source))
    return [
        ctx.node("LeakyRelu", [source], [leaky], alpha=float(params.alpha)),
        ctx.node("Min", [leaky, ctx.const(np.float32(params.beta), hint="beta")], [target]),
    ]
