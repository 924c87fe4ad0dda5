"""Converter for ``batchnorm``: inference statistics (``computeMeanVar`` false) and
instance normalization (``computeMeanVar`` and ``instanceNormalization`` true)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import channel_axis, check_io, invalid, unsupported


def _channel_values(layer: Any, params: Any, channels: int, what: str) -> np.ndarray:
    from ...coreml.weights import decode_weights

    values = decode_weights(params, count=channels, layer=layer.name)
    if values.size != channels:
        raise invalid(layer, f"{what} has {values.size} values for {channels} channels")
    return values.astype(np.float32)


@converts("batchnorm")
def convert_batchnorm(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Batch normalisation with the stored mean and variance, or with each example's own
    (``computeMeanVar``)."""
    check_io(layer)
    p = layer.batchnorm
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    if rank < 2:
        raise invalid(layer, f"input must have rank >= 2 (has {rank})")
    if channel_axis(rank) != 1:
        raise invalid(layer, f"a rank-{rank} input is not supported")
    channels = int(p.channels)
    gamma = _channel_values(layer, p.gamma, channels, "gamma")
    beta = _channel_values(layer, p.beta, channels, "beta")
    ctx.set_rank(y, rank)
    eps = float(p.epsilon)
    if not p.computeMeanVar:
        mean = _channel_values(layer, p.mean, channels, "mean")
        var = _channel_values(layer, p.variance, channels, "variance")
        names = [
            ctx.const(v, hint=h)
            for v, h in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"))
        ]
        return [ctx.node("BatchNormalization", [x, *names], [y], epsilon=eps)]
    if p.instanceNormalization:
        if rank < 3:
            raise invalid(layer, "instance normalization needs spatial axes")
        scale, bias = ctx.const(gamma, hint="gamma"), ctx.const(beta, hint="beta")
        return [ctx.node("InstanceNormalization", [x, scale, bias], [y], epsilon=eps)]
    # Batch statistics without instance normalization is refused by Core ML and
    # coremltools alike ("batch-instance norm"), so a model cannot rely on it.
    raise unsupported(layer, "computeMeanVar without instanceNormalization")
