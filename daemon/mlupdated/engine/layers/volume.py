"""Converters for the 3-D layers on ``[N, C, D, H, W]`` blobs: ``convolution3d`` and
``pooling3d`` (``globalPooling3d`` lives with the other pooling layers).

Padding: CUSTOM pads front/back, top/bottom, left/right as given; VALID pads nothing;
SAME pads to ``ceil(size / stride)`` outputs with the odd element at the back/bottom/
right (ONNX's SAME_UPPER). Max pooling ignores padded elements, as PyTorch's does.
3-D deconvolution is refused.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...coreml.weights import decode_weights
from ..registry import ConvertContext, converts
from ._common import check_io, input_rank, invalid, refused, same_rank_output

_CUSTOM, _VALID, _SAME = 0, 1, 2
_MAX, _AVERAGE = 0, 1


def _padding(
    layer: Any,
    ctx: ConvertContext,
    p: Any,
    kind: int,
    kernel: list[int],
    strides: list[int],
    dilations: tuple[int, ...] = (1, 1, 1),
) -> dict[str, Any]:
    """The ONNX padding attributes for a 3-D layer's padding type."""
    if kind == _SAME:
        sizes = ctx.static_shape(layer.input[0])[-3:]
        if None in sizes:
            if max(dilations) > 1:
                raise refused(
                    layer, "SAME padding with dilation over sizes unknown at compile time"
                )
            return {"auto_pad": "SAME_UPPER"}
        before, after = [], []
        for size, k, st, dl in zip(sizes, kernel, strides, dilations, strict=True):
            out = -(-int(size) // st)
            total = max((out - 1) * st + (k - 1) * dl + 1 - int(size), 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return {"pads": before + after}
    if kind == _VALID:
        return {"pads": [0] * 6}
    if kind != _CUSTOM:
        raise invalid(layer, f"unknown padding type {kind}")
    before = [p.customPaddingFront, p.customPaddingTop, p.customPaddingLeft]
    after = [p.customPaddingBack, p.customPaddingBottom, p.customPaddingRight]
    if min(before + after) < 0:
        raise invalid(layer, "negative padding")
    return {"pads": [int(v) for v in before + after]}


def _positive(layer: Any, name: str, values: list[int]) -> list[int]:
    if min(values) < 1:
        raise invalid(layer, f"{name} {values} must be positive")
    return values


@converts("convolution3d")
def convert_convolution3d(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``convolution3d`` (grouped, strided, dilated), optional bias."""
    check_io(layer)
    p = layer.convolution3d
    x, y = layer.input[0], layer.output[0]
    input_rank(layer, ctx, x, minimum=5)
    if p.isDeconvolution:
        raise refused(layer, "3-D deconvolution is not supported")
    groups = int(p.nGroups) or 1
    out_c, in_c = int(p.outputChannels), int(p.inputChannels)
    if out_c < 1 or in_c < 1 or in_c % groups or out_c % groups:
        raise invalid(layer, f"channels {in_c} -> {out_c} do not fit {groups} groups")
    kernel = _positive(layer, "kernel", [p.kernelDepth, p.kernelHeight, p.kernelWidth])
    strides = _positive(
        layer, "stride", [p.strideDepth or 1, p.strideHeight or 1, p.strideWidth or 1]
    )
    dilations = _positive(
        layer, "dilation", [p.dilationDepth or 1, p.dilationHeight or 1, p.dilationWidth or 1]
    )
    shape = (out_c, in_c // groups, *kernel)
    weights = ctx.weights(p.weights, shape, hint=f"{layer.name}/W")
    inputs = [x, weights]
    if p.hasBias:
        bias = decode_weights(p.bias, count=out_c, layer=layer.name)
        inputs.append(ctx.const(bias.reshape(out_c), hint=f"{layer.name}/b"))
    same_rank_output(layer, ctx)
    return [
        ctx.node(
            "Conv",
            inputs,
            [y],
            kernel_shape=kernel,
            strides=strides,
            dilations=dilations,
            group=groups,
            **_padding(layer, ctx, p, p.paddingType, kernel, strides, tuple(dilations)),
        )
    ]


@converts("pooling3d")
def convert_pooling3d(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``pooling3d``: MAX or AVERAGE (with or without the padded elements counted)."""
    check_io(layer)
    p = layer.pooling3d
    x, y = layer.input[0], layer.output[0]
    input_rank(layer, ctx, x, minimum=5)
    kernel = _positive(layer, "kernel", [p.kernelDepth, p.kernelHeight, p.kernelWidth])
    strides = _positive(
        layer, "stride", [p.strideDepth or 1, p.strideHeight or 1, p.strideWidth or 1]
    )
    pads = _padding(layer, ctx, p, p.paddingType, kernel, strides)
    attrs = {"kernel_shape": kernel, "strides": strides, **pads}
    same_rank_output(layer, ctx)
    if p.type == _MAX:
        return [ctx.node("MaxPool", [x], [y], **attrs)]
    if p.type != _AVERAGE:
        raise invalid(layer, f"unknown pooling type {p.type}")
    include = 0 if p.countExcludePadding else 1
    return [ctx.node("AveragePool", [x], [y], count_include_pad=include, **attrs)]
