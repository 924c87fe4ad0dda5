"""Converters for ``upsample`` and ``resizeBilinear``: spatial resizing of
``[batch, C, H, W]`` blobs with ONNX ``Resize``.

Each Core ML grid rule matches one ONNX coordinate transformation (``x_in`` is the
input coordinate sampled for output index ``i``; ``s`` = output/input size):

* upsample NN: ``x_in = floor(i / s)`` — ``asymmetric`` with ``floor`` rounding;
* bilinear DEFAULT / resizeBilinear UPSAMPLE_MODE: ``i * Xin/Xout`` — ``asymmetric``;
* ALIGN_CORNERS_TRUE / STRICT_ALIGN_ENDPOINTS_MODE: ``i * (Xin-1)/(Xout-1)`` —
  ``align_corners``;
* ALIGN_CORNERS_FALSE: ``(i + 0.5) * Xin/Xout - 0.5`` — ``half_pixel``;
* ALIGN_ENDPOINTS_MODE: ``align_corners``, except that an output of size 1 samples the
  centre ``(Xin-1)/2``, which is ``half_pixel`` at that size.

All clamp to ``[0, Xin-1]``, as Core ML's ``min(Xin-1, max(0, ...))`` does. Fractional
scale factors give ``floor(X * factor)`` outputs; their sizes are computed at run time
so that ONNX derives the scale from the real sizes, as Core ML's spacing does.
``resizeBilinear`` in ROI_ALIGN_MODE is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import input_rank, invalid, one_input, refused

_RANK = 4  # batch, C, H, W
_MIN_RANK = 3  # Core ML's [C, H, W], whose C is our batch axis
_NN, _BILINEAR = 0, 1
# UpsampleLayerParams.LinearUpsampleMode -> ONNX coordinate_transformation_mode.
_LINEAR_MODES = {0: "asymmetric", 1: "align_corners", 2: "half_pixel"}
_STRICT_ALIGN, _ALIGN_ENDPOINTS, _UPSAMPLE_MODE, _ROI_ALIGN = range(4)


def as_nchw(
    layer: Any, ctx: ConvertContext, body: Callable[[str, str], list[onnx.NodeProto]]
) -> list[onnx.NodeProto]:
    """Run ``body(x4, y4)``, written for ``[N, C, H, W]`` blobs, on the layer's input of
    any rank >= 3, as the proto asks of spatial layers: axes before C, H, W are batch.

    A rank-3 blob is ``[batch, H, W]`` here (Core ML's ``[C, H, W]`` with the batch of
    one as C) and runs with one channel; ranks above 4 fold their leading axes into
    the batch and unfold them afterwards.
    """
    source, target = one_input(layer)
    rank = input_rank(layer, ctx, source, minimum=_MIN_RANK)
    ctx.set_rank(target, rank)
    if rank == _RANK:
        return body(source, target)
    x4, y4 = ctx.fresh(f"{source}__nchw"), ctx.fresh(f"{target}__nchw")
    if rank == _MIN_RANK:
        axis = ctx.int64s([1], hint="axes")
        return [
            ctx.node("Unsqueeze", [source, axis], [x4]),
            *body(x4, y4),
            ctx.node("Squeeze", [y4, axis], [target]),
        ]
    chw, folded_shape = ctx.fresh(f"{source}__chw"), ctx.fresh(f"{source}__folded")
    lead, tail, shape = (ctx.fresh(f"{target}__{part}") for part in ("lead", "tail", "shape"))
    return [
        ctx.node("Shape", [source], [chw], start=rank - 3),
        ctx.node("Concat", [ctx.int64s([-1], hint="batch"), chw], [folded_shape], axis=0),
        ctx.node("Reshape", [source, folded_shape], [x4]),
        *body(x4, y4),
        ctx.node("Shape", [source], [lead], start=0, end=rank - 3),
        ctx.node("Shape", [y4], [tail], start=1),
        ctx.node("Concat", [lead, tail], [shape], axis=0),
        ctx.node("Reshape", [y4, shape], [target]),
    ]


def _resize(
    ctx: ConvertContext, source: str, target: str, *, scales: str = "", sizes: str = "", **attrs
) -> onnx.NodeProto:
    inputs = [source, "", scales] if scales else [source, "", "", sizes]
    return ctx.node("Resize", inputs, [target], **attrs)


def _runtime_sizes(
    ctx: ConvertContext, source: str, spatial: list[str], nodes: list[onnx.NodeProto]
) -> str:
    """``[N, C] + spatial`` as an int64 tensor, ``spatial`` being two 1-element tensors."""
    head = ctx.fresh(f"{source}__nc")
    sizes = ctx.fresh(f"{source}__sizes")
    nodes.append(ctx.node("Shape", [source], [head], start=0, end=2))
    nodes.append(ctx.node("Concat", [head, *spatial], [sizes], axis=0))
    return sizes


@converts("upsample")
def convert_upsample(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Nearest-neighbour or bilinear upsampling by integer or fractional factors."""
    params = layer.upsample
    integer = [int(v) for v in params.scalingFactor]
    fractional = [float(v) for v in params.fractionalScalingFactor]
    if integer and fractional:
        raise invalid(layer, "scalingFactor and fractionalScalingFactor are both set")
    if params.mode not in (_NN, _BILINEAR):
        raise refused(layer, f"interpolation mode {params.mode}")
    if params.linearUpsampleMode not in _LINEAR_MODES:
        raise refused(layer, f"linearUpsampleMode {params.linearUpsampleMode}")
    factors = fractional or integer or [1, 1]
    if len(factors) != 2 or min(factors) <= 0:
        raise invalid(layer, f"needs two positive scaling factors [H, W], got {factors}")
    if params.mode == _NN:
        if fractional and any(f != math.floor(f) for f in fractional):
            raise refused(layer, "fractional scaling factors with NN interpolation")
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    else:
        attrs = {
            "mode": "linear",
            "coordinate_transformation_mode": _LINEAR_MODES[params.linearUpsampleMode],
        }
    return as_nchw(
        layer,
        ctx,
        lambda x, y: _upsample(ctx, x, y, factors, fractional=bool(fractional), attrs=attrs),
    )


def _upsample(
    ctx: ConvertContext,
    source: str,
    target: str,
    factors: list,
    *,
    fractional: bool,
    attrs: dict,
) -> list[onnx.NodeProto]:
    if not fractional:
        scales = ctx.const(np.asarray([1, 1, *factors], dtype=np.float32), hint="scales")
        return [_resize(ctx, source, target, scales=scales, **attrs)]
    # Output size floor(X * f), computed from the real input size.
    nodes: list[onnx.NodeProto] = []
    hw = ctx.fresh(f"{target}__hw")
    hw_float = ctx.fresh(f"{target}__hwf")
    scaled = ctx.fresh(f"{target}__hws")
    floored = ctx.fresh(f"{target}__hwfloor")
    out_hw = ctx.fresh(f"{target}__outhw")
    nodes += [
        ctx.node("Shape", [source], [hw], start=2),
        ctx.node("Cast", [hw], [hw_float], to=onnx.TensorProto.FLOAT),
        ctx.node(
            "Mul",
            [hw_float, ctx.const(np.asarray(factors, dtype=np.float32), hint="factors")],
            [scaled],
        ),
        ctx.node("Floor", [scaled], [floored]),
        ctx.node("Cast", [floored], [out_hw], to=onnx.TensorProto.INT64),
    ]
    sizes = _runtime_sizes(ctx, source, [out_hw], nodes)
    nodes.append(_resize(ctx, source, target, sizes=sizes, **attrs))
    return nodes


def _resize_bilinear_mode(layer: Any, method: int, size: int) -> str:
    if method == _STRICT_ALIGN:
        return "align_corners"
    if method == _ALIGN_ENDPOINTS:
        return "half_pixel" if size == 1 else "align_corners"
    if method == _UPSAMPLE_MODE:
        return "asymmetric"
    if method == _ROI_ALIGN:
        raise refused(layer, "sampling mode ROI_ALIGN_MODE")
    raise refused(layer, f"sampling mode {method}")


@converts("resizeBilinear")
def convert_resize_bilinear(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Bilinear resize to a fixed ``[H_out, W_out]`` with the spec's sampling grid."""
    params = layer.resizeBilinear
    size = [int(v) for v in params.targetSize] or [1, 1]
    if len(size) != 2 or min(size) < 1:
        raise invalid(layer, f"targetSize must be two positive sizes [H, W], got {size}")
    method = params.mode.samplingMethod
    modes = [_resize_bilinear_mode(layer, method, n) for n in size]
    return as_nchw(layer, ctx, lambda x, y: _resize_bilinear(ctx, x, y, size, modes))


def _resize_bilinear(
    ctx: ConvertContext, source: str, target: str, size: list[int], modes: list[str]
) -> list[onnx.NodeProto]:
    nodes: list[onnx.NodeProto] = []
    if modes[0] == modes[1]:
        sizes = _runtime_sizes(ctx, source, [ctx.int64s(size, hint="hw")], nodes)
        nodes.append(
            _resize(
                ctx,
                source,
                target,
                sizes=sizes,
                mode="linear",
                coordinate_transformation_mode=modes[0],
            )
        )
        return nodes
    # Different grids per axis: bilinear is separable, so resize H, then W.
    tall = ctx.fresh(f"{target}__h")
    width = ctx.fresh(f"{target}__w")
    nodes.append(ctx.node("Shape", [source], [width], start=3))
    sizes_h = _runtime_sizes(ctx, source, [ctx.int64s([size[0]], hint="h"), width], nodes)
    nodes.append(
        _resize(
            ctx, source, tall, sizes=sizes_h, mode="linear", coordinate_transformation_mode=modes[0]
        )
    )
    sizes_w = _runtime_sizes(ctx, tall, [ctx.int64s(size, hint="hw")], nodes)
    nodes.append(
        _resize(
            ctx, tall, target, sizes=sizes_w, mode="linear", coordinate_transformation_mode=modes[1]
        )
    )
    return nodes
