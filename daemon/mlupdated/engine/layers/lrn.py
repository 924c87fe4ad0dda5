"""Converter for ``lrn``: local response normalization across channels.

Core ML and ONNX agree on the formula: ``x / (k + alpha/localSize * sum x_j^2)^beta``,
both divide alpha by the window size. The window of channel ``c`` is
``[c - floor((n-1)/2), c + ceil((n-1)/2)]`` in ONNX (as in Caffe, where Core ML's LRN
comes from); for odd sizes, the only ones converters emit, it is centred.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError, UnsupportedLayerError
from ..registry import ConvertContext, converts

DEFAULT_K = 1.0  # proto: "Defaults to 1 if not set or 0"
_RANK = 4  # ONNX LRN takes the channels on axis 1: [N, C, H, W]


@converts("lrn")
def convert_lrn(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Local response normalization over a ``localSize`` window of channels."""
    if len(layer.input) != 1 or len(layer.output) != 1:
        raise InvalidModelError(
            f"layer {layer.name!r} (lrn) needs 1 input and 1 output", layer=layer.name
        )
    params = layer.lrn
    source, target = layer.input[0], layer.output[0]
    rank = ctx.rank(source)
    if rank != _RANK:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (lrn) runs on [batch, C, H, W] blobs only, got rank {rank}",
            layer=layer.name,
            layer_type="lrn",
        )
    if params.localSize < 1:
        raise InvalidModelError(
            f"layer {layer.name!r} (lrn): localSize must be >= 1, got {params.localSize}",
            layer=layer.name,
        )
    k = params.k if params.k != 0 else DEFAULT_K
    if k < 0:
        raise InvalidModelError(
            f"layer {layer.name!r} (lrn): k must be positive, got {k}", layer=layer.name
        )
    ctx.set_rank(target, rank)
    return [
        ctx.node(
            "LRN",
            [source],
            [target],
            alpha=float(params.alpha),
            beta=float(params.beta),
            bias=float(k),
            size=int(params.localSize),
        )
    ]
