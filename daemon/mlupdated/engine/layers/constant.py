"""Converters for ``loadConstant`` and ``loadConstantND``.

How a constant gets its batch axis: it has none of its own, it gets one of size 1 that
broadcasts. ``loadConstant`` (shape ``[C, H, W]``) becomes a ``[1, C, H, W]`` tensor,
like any classic blob with the batch in front. ``loadConstantND`` keeps exactly the
shape the spec gives: Core ML predicts one example at a time, so a leading 1 there
is the batch of one, and when the constant meets a batched blob in a later layer,
ONNX's NumPy-style broadcasting stretches that 1 (or the missing leading axes) to
the batch of ``N``. Layers that do not broadcast (concatenation, for example) must
expand such a constant to the batch themselves.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts

_CLASSIC_SHAPE_LEN = 3  # [C, H, W]


def _output(layer: Any) -> str:
    if len(layer.input) != 0 or len(layer.output) != 1:
        raise InvalidModelError(
            f"layer {layer.name!r} ({layer.WhichOneof('layer')}) takes no input and produces "
            f"1 output, has {len(layer.input)} and {len(layer.output)}",
            layer=layer.name,
        )
    return layer.output[0]


def _shape(layer: Any, shape: Any) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if not dims or 0 in dims:
        raise InvalidModelError(
            f"layer {layer.name!r} ({layer.WhichOneof('layer')}) has an empty shape {list(dims)}",
            layer=layer.name,
        )
    return dims


@converts("loadConstant")
def convert_load_constant(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A ``[C, H, W]`` constant, as a ``[1, C, H, W]`` blob."""
    target = _output(layer)
    params = layer.loadConstant
    dims = _shape(layer, params.shape)
    if len(dims) != _CLASSIC_SHAPE_LEN:
        raise InvalidModelError(
            f"layer {layer.name!r} (loadConstant) needs a shape [C, H, W], got {list(dims)}",
            layer=layer.name,
        )
    value = ctx.weights(params.data, (1, *dims), hint=f"{layer.name}/data")
    ctx.set_rank(target, len(dims) + 1)
    return [ctx.node("Identity", [value], [target])]


@converts("loadConstantND")
def convert_load_constant_nd(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A constant of exactly the spec's shape (see the module docstring for its batch)."""
    target = _output(layer)
    params = layer.loadConstantND
    dims = _shape(layer, params.shape)
    value = ctx.weights(params.data, dims, hint=f"{layer.name}/data")
    ctx.set_rank(target, len(dims))
    return [ctx.node("Identity", [value], [target])]
