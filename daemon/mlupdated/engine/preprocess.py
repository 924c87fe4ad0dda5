"""An image input's preprocessing (Core ML's scaler or mean image) as ONNX nodes, and
the fold of a scaler's scale into the weights of the one convolution that reads the
image (one pass less over every input image)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from ..coreml.image_tensor import GRAYSCALE_SPACES, image_size
from ..errors import InvalidModelError
from .dataflow import has_control_flow
from .registry import ConvertContext

# ImageFeatureType.ColorSpace value of BGR.
_BGR = 30


def image_dims(feature: Any) -> tuple[int, int, int]:
    """(C, H, W) of an image input as it is fed (flexible sizes: their default)."""
    image = feature.type.imageType
    channels = 1 if image.colorSpace in GRAYSCALE_SPACES else 3
    width, height = image_size(image)
    return channels, height, width


def scaler_folds(
    spec: Any, nn: Any, selected: Sequence[Any], wanted: Sequence[str]
) -> dict[str, tuple[int, float]]:
    """Image inputs whose scaler's ``channelScale`` can move into the weights of the
    convolution that reads them: ``{input: (layer index of that convolution, scale)}``.

    A convolution is linear in its input, and zero padding commutes with a scale, so
    ``conv(pad0(s * x + b)) == conv_{s * W}(pad0(x + b / s))``: the graph then adds
    ``b / s`` to the raw image and skips one pass over it (the multiply). Only when the
    preprocessed image feeds exactly one layer: a convolution with its own weights, or a
    constant-0 padding layer whose output feeds only such a convolution; neither may be
    updatable nor give a model output.
    """
    folds: dict[str, tuple[int, float]] = {}
    if has_control_flow(selected):
        return folds  # sub-networks may read the image too
    image_inputs = {f.name for f in spec.description.input if f.type.HasField("imageType")}
    scalers: dict[str, list[Any]] = {}
    for pre in nn.preprocessing:
        name = pre.featureName or (next(iter(image_inputs)) if len(image_inputs) == 1 else "")
        scalers.setdefault(name, []).append(pre)
    for name, pres in scalers.items():
        if (
            name not in image_inputs
            or len(pres) != 1
            or pres[0].WhichOneof("preprocessor") != "scaler"
        ):
            continue
        scale = pres[0].scaler.channelScale
        if scale in (0.0, 1.0) or not np.isfinite(scale) or name in wanted:
            continue
        index = _only_reader(selected, name)
        if index is not None and selected[index].WhichOneof("layer") == "padding":
            padding = selected[index]
            pad = padding.padding
            out = padding.output[0] if len(padding.output) == 1 else None
            if (
                pad.WhichOneof("PaddingType") != "constant"
                or pad.constant.value != 0
                or padding.isUpdatable
                or out is None
                or out in wanted
            ):
                continue
            index = _only_reader(selected, out)
        if index is None or selected[index].WhichOneof("layer") != "convolution":
            continue
        conv = selected[index]
        if conv.convolution.isDeconvolution or len(conv.input) != 1 or conv.isUpdatable:
            continue
        folds[name] = (index, float(scale))
    return folds


def _only_reader(layers: Sequence[Any], blob: str) -> int | None:
    """The index of the one layer that reads ``blob`` (once), else None."""
    readers = [i for i, layer in enumerate(layers) for b in layer.input if b == blob]
    return readers[0] if len(readers) == 1 else None


def scaled_convolution(layer: Any, scale: float) -> Any:
    """A copy of a convolution layer with its weights multiplied by ``scale``."""
    from ..coreml.weights import decode_layer_weights, encode_float32

    folded = type(layer)()
    folded.CopyFrom(layer)
    weights = decode_layer_weights(layer).astype(np.float32) * np.float32(scale)
    folded.convolution.weights.CopyFrom(encode_float32(weights))
    return folded


def preprocessing(
    spec: Any, nn: Any, ctx: ConvertContext, folded: Mapping[str, float] | None = None
) -> tuple[list, dict[str, str]]:
    """Nodes for the scaler / mean-image steps; returns them and input → blob renames.
    A scaler of an input in ``folded`` (see :func:`scaler_folds`) adds ``bias / scale``
    only: its scale is in the convolution's weights."""
    folded = folded or {}
    nodes: list[onnx.NodeProto] = []
    renames: dict[str, str] = {}
    image_inputs = {f.name: f for f in spec.description.input if f.type.HasField("imageType")}
    for pre in nn.preprocessing:
        name = pre.featureName
        if not name:
            if len(image_inputs) != 1:
                raise InvalidModelError("preprocessing without featureName needs one image input")
            name = next(iter(image_inputs))
        if name not in image_inputs:
            raise InvalidModelError(f"preprocessing names {name!r}, which is not an image input")
        source = renames.get(name, name)
        target = ctx.fresh(f"{name}__pre")
        c, h, w = image_dims(image_inputs[name])
        which = pre.WhichOneof("preprocessor")
        if which == "scaler":
            s = pre.scaler
            if c == 1:
                bias = [s.grayBias]
            elif image_inputs[name].type.imageType.colorSpace == _BGR:
                bias = [s.blueBias, s.greenBias, s.redBias]
            else:
                bias = [s.redBias, s.greenBias, s.blueBias]
            # channelScale = 0 is proto3's unset default and means 1 (no scaling).
            scale = s.channelScale if s.channelScale != 0 else 1.0
            bias_arr = np.asarray(bias, dtype=np.float32).reshape(1, c, 1, 1)
            if name in folded:
                shift = (bias_arr.astype(np.float64) / folded[name]).astype(np.float32)
                nodes.append(ctx.node("Add", [source, ctx.const(shift, hint="bias")], [target]))
            else:
                scaled = ctx.fresh(f"{name}__scaled")
                nodes.append(
                    ctx.node("Mul", [source, ctx.const(np.float32(scale), hint="scale")], [scaled])
                )
                nodes.append(ctx.node("Add", [scaled, ctx.const(bias_arr, hint="bias")], [target]))
        elif which == "meanImage":
            mean = np.asarray(pre.meanImage.meanImage, dtype=np.float32)
            if mean.size != c * h * w:
                raise InvalidModelError(
                    f"mean image of {name!r} has {mean.size} values, expected C*H*W"
                )
            mean = mean.reshape(1, c, h, w)
            nodes.append(ctx.node("Sub", [source, ctx.const(mean, hint="mean")], [target]))
        else:
            continue
        renames[name] = target
        ctx.set_rank(target, 4)
    return nodes, renames
