"""Converter for ``convolution`` (grouped, depthwise, dilated; valid, same and
explicit padding) and its deconvolution form (``isDeconvolution``, ``outputShape``).

Core ML's "same" padding keeps ``ceil(H / stride)`` outputs; the odd pixel of padding
goes to the bottom/right (``BOTTOM_RIGHT_HEAVY``, the default) or to the top/left
(``TOP_LEFT_HEAVY``). Pads are computed here from the static input size, so the graph
does not depend on how a runtime reads ``auto_pad``.
"""

from __future__ import annotations

from typing import Any

import onnx

from ...coreml.padding import TOP_LEFT_HEAVY, pair, same_pads, valid_pads
from ..registry import ConvertContext, converts
from ._common import check_io, invalid, unsupported


def border_pads(valid: Any) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), ONNX's order, from ``ValidPadding.paddingAmounts``."""
    (top, bottom), (left, right) = valid_pads(valid)
    return top, left, bottom, right


def _decode(layer: Any, params: Any, shape: tuple[int, ...], *, channel_axis: int) -> Any:
    from ...coreml.weights import decode_weights

    count = 1
    for d in shape:
        count *= d
    values = decode_weights(
        params, count=count, layer=layer.name, shape=shape, channel_axis=channel_axis
    )
    return values.reshape(shape).astype("float32")


def spatial_size(layer: Any, ctx: ConvertContext, blob: str) -> tuple[int, int]:
    """The static (height, width) of a ``[N, C, H, W]`` blob, or an error naming the layer."""
    shape = ctx.static_shape(blob)
    if len(shape) != 4 or shape[2] is None or shape[3] is None:
        raise invalid(layer, f"needs a [N, C, H, W] input of known size, got {shape}")
    return int(shape[2]), int(shape[3])


@converts("convolution")
def convert_convolution(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Convolution and deconvolution with Core ML's padding rules made explicit."""
    check_io(layer, inputs=(1, 2))
    if len(layer.input) == 2:
        raise unsupported(layer, "weights given as a second input")
    x, y = layer.input[0], layer.output[0]
    if ctx.rank(x) == 5 and ctx.classic_sequences:
        return _over_steps(layer, ctx)
    if ctx.rank(x) != 4:
        raise invalid(layer, f"input must be [N, C, H, W] (rank {ctx.rank(x)})")
    return _convolution(layer, ctx, x, y)


def _over_steps(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A convolution over a sequence blob ``[N, Seq, C, H, W]``: Core ML convolves each
    step of each example alike, so the steps join the batch (``[N * Seq, C, H, W]``)
    for one ``Conv`` and part again after it."""
    x, y = layer.input[0], layer.output[0]
    shape = ctx.static_shape(x)
    if len(shape) != 5 or any(d is None for d in shape[1:]):
        raise invalid(layer, f"needs a [N, Seq, C, H, W] sequence of known size, got {shape}")
    seq, c, h, w = (int(d) for d in shape[1:])
    steps, out_steps = ctx.fresh(f"{x}__steps"), ctx.fresh(f"{y}__steps")
    ctx.set_rank(steps, 4)
    nodes = [ctx.node("Reshape", [x, ctx.int64s([-1, c, h, w], hint="shape")], [steps])]
    nodes += _convolution(layer, ctx, steps, out_steps, size=(h, w))
    # [N * Seq, C', H', W'] -> [N, Seq, C', H', W'], with C', H', W' read at run time.
    chw = ctx.fresh(f"{y}__chw")
    nodes.append(
        ctx.node(
            "Slice",
            [
                _shape_of(ctx, out_steps, nodes),
                ctx.int64s([1], hint="starts"),
                ctx.int64s([4], hint="ends"),
            ],
            [chw],
        )
    )
    target = ctx.fresh(f"{y}__shape")
    nodes.append(ctx.node("Concat", [ctx.int64s([-1, seq], hint="lead"), chw], [target], axis=0))
    nodes.append(ctx.node("Reshape", [out_steps, target], [y]))
    ctx.set_rank(y, 5)
    return nodes


def _shape_of(ctx: ConvertContext, blob: str, nodes: list[onnx.NodeProto]) -> str:
    shape = ctx.fresh(f"{blob}__shape")
    nodes.append(ctx.node("Shape", [blob], [shape]))
    return shape


def _convolution(
    layer: Any, ctx: ConvertContext, x: str, y: str, *, size: tuple[int, int] | None = None
) -> list[onnx.NodeProto]:
    """The ``Conv``/``ConvTranspose`` of ``layer`` from ``x`` ``[N, C, H, W]`` to ``y``
    (``size``: the input's (H, W) when the graph so far cannot tell it)."""
    p = layer.convolution
    c_out, k_ch = int(p.outputChannels), int(p.kernelChannels)
    groups = int(p.nGroups) or 1
    kh, kw = pair(p.kernelSize, 3)
    sh, sw = pair(p.stride, 1)
    dh, dw = pair(p.dilationFactor, 1)
    if min(c_out, k_ch, kh, kw, sh, sw, dh, dw) <= 0:
        raise invalid(layer, "channels, kernel, stride and dilation must be positive")
    if p.isDeconvolution:
        if c_out % groups:
            raise invalid(layer, f"outputChannels {c_out} not divisible by nGroups {groups}")
        w_shape = (k_ch, c_out // groups, kh, kw)
    else:
        w_shape = (c_out, k_ch, kh, kw)
    if p.isDeconvolution:
        # Deconvolution weights are [Cin, Cout/groups, kh, kw]: per-channel quantization
        # runs along their second axis (the output channels).
        weights = ctx.const(_decode(layer, p.weights, w_shape, channel_axis=1), hint="W")
    else:
        weights = ctx.weights(p.weights, w_shape, hint=f"{layer.name}/W")
    inputs = [x, weights]
    if p.hasBias:
        inputs.append(ctx.weights(p.bias, (c_out,), hint=f"{layer.name}/b"))
    ctx.set_rank(y, 4)
    attrs: dict[str, Any] = dict(
        kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], group=groups
    )
    if p.isDeconvolution:
        return [_deconvolution(layer, ctx, p, inputs, attrs, x, y, size)]
    padding = p.WhichOneof("ConvolutionPaddingType")
    if padding == "same":
        h, w = size or spatial_size(layer, ctx, x)
        mode = p.same.asymmetryMode
        top, bottom = same_pads(h, kh, sh, dh, mode)
        left, right = same_pads(w, kw, sw, dw, mode)
    else:
        top, left, bottom, right = border_pads(p.valid)
    return [ctx.node("Conv", inputs, [y], pads=[top, left, bottom, right], **attrs)]


def _deconvolution(
    layer: Any,
    ctx: ConvertContext,
    p: Any,
    inputs: list[str],
    attrs: dict[str, Any],
    x: str,
    y: str,
    size: tuple[int, int] | None,
) -> onnx.NodeProto:
    h, w = size or spatial_size(layer, ctx, x)
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    full_h = (h - 1) * sh + (kh - 1) * dh + 1
    full_w = (w - 1) * sw + (kw - 1) * dw + 1
    padding = p.WhichOneof("ConvolutionPaddingType")
    if padding == "same":
        natural_h, natural_w = h * sh, w * sw
        mode = p.same.asymmetryMode
        crop_h, crop_w = max(full_h - natural_h, 0), max(full_w - natural_w, 0)
        split = (
            (lambda t: (t - t // 2, t // 2))
            if mode == TOP_LEFT_HEAVY
            else (lambda t: (t // 2, t - t // 2))
        )
        top, bottom = split(crop_h)
        left, right = split(crop_w)
    else:
        top, left, bottom, right = border_pads(p.valid)
    natural_h = full_h - top - bottom
    natural_w = full_w - left - right
    extra_h = extra_w = 0
    if len(p.outputShape):
        if len(p.outputShape) != 2:
            raise invalid(layer, "outputShape needs (height, width)")
        want_h, want_w = (int(v) for v in p.outputShape)
        extra_h, extra_w = want_h - natural_h, want_w - natural_w
        if extra_h < 0 or extra_w < 0:
            # A smaller output crops the end (Core ML's deconvolution with outputShape).
            bottom += max(-extra_h, 0)
            right += max(-extra_w, 0)
            extra_h, extra_w = max(extra_h, 0), max(extra_w, 0)
    return ctx.node(
        "ConvTranspose",
        inputs,
        [y],
        pads=[top, left, bottom, right],
        output_padding=[extra_h, extra_w],
        **attrs,
    )


__all__ = ["convert_convolution", "pair", "border_pads", "same_pads", "spatial_size"]
