"""Compile a Core ML neural network spec into one ONNX graph.

The graph takes the model's inputs with the batch as axis 0: an image input is a
float32 ``[N, C, H, W]`` tensor of raw 0..255 values in the model's colour space
(what ``coreml.images.image_to_tensor`` returns, stacked); a multi-array input is
``[N, *shape]`` (with ``EXACT_ARRAY_MAPPING``, a spec shape that starts with 1 has
its batch there, so the input is that shape with axis 0 left free; ND layers'
positive axes count that batch axis). The network's preprocessing
(scaler or mean image) comes first, then the layers, each converted by its family's
converter from the registry. Everything that can be refused is refused here, before
anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..coreml.image_tensor import GRAYSCALE_SPACES, image_size, multiarray_shape
from ..errors import InvalidModelError
from .dataflow import has_control_flow, nested_layers, rewritten
from .network import (
    NEURAL_NETWORK_KINDS,
    OPSET,
    default_outputs,
    network_of,
    probabilities_blob,
)
from .registry import FLOAT, ConvertContext, converter_for, run_converter

__all__ = [
    "NEURAL_NETWORK_KINDS",
    "OPSET",
    "compile_network",
    "default_outputs",
    "network_of",
    "probabilities_blob",
]

IR_VERSION = 8  # the IR that opset 17 (OPSET) shipped with; every onnxruntime >= 1.13 reads it
BATCH_DIM = "N"

# NeuralNetwork.arrayInputShapeMapping values.
_EXACT_ARRAY_MAPPING = 1
# ImageFeatureType.ColorSpace value of BGR.
_BGR = 30


def _image_dims(feature: Any) -> tuple[int, int, int]:
    """(C, H, W) of an image input as it is fed (flexible sizes: their default)."""
    image = feature.type.imageType
    channels = 1 if image.colorSpace in GRAYSCALE_SPACES else 3
    width, height = image_size(image)
    return channels, height, width


def _add_inputs(
    spec: Any,
    nn: Any,
    ctx: ConvertContext,
    batch: int | str,
    sequences: Mapping[str, int] | None = None,
) -> tuple[list[onnx.ValueInfoProto], list[onnx.NodeProto], dict[str, str]]:
    """Graph inputs, the nodes that bring them to the engine's layout, and the renames
    (input name → blob that layers read instead)."""
    sequences = dict(sequences or {})
    inputs: list[onnx.ValueInfoProto] = []
    renames: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for feature in spec.description.input:
        kind = feature.type.WhichOneof("Type")
        name = feature.name
        ctx.reserve(name)
        if kind == "imageType":
            c, h, w = _image_dims(feature)
            inputs.append(helper.make_tensor_value_info(name, FLOAT, [batch, c, h, w]))
            ctx.set_rank(name, 4)
        elif kind == "multiArrayType":
            shape = list(multiarray_shape(feature))
            if nn.arrayInputShapeMapping == _EXACT_ARRAY_MAPPING:
                # coremltools writes ND shapes with the batch (1) first; a shape that
                # does not start with 1 gets a batch axis in front of it.
                rest = shape[1:] if shape and shape[0] == 1 else shape
                dims: list[int | str] = [batch, *rest]
                inputs.append(helper.make_tensor_value_info(name, FLOAT, dims))
                ctx.set_rank(name, len(dims))
            else:
                # Rank-5 mapping: [C] means [C, 1, 1], [C, H, W] is itself.
                if len(shape) not in (1, 3):
                    raise InvalidModelError(
                        f"input {name!r} has shape {shape}; a rank-5-mapped network takes "
                        "[C] or [C, H, W]"
                    )
                if name in sequences:
                    info, seq_nodes, blob = _sequence_input(
                        ctx, name, shape, sequences.pop(name), batch
                    )
                    inputs.append(info)
                    nodes += seq_nodes
                    if blob != name:
                        renames[name] = blob
                    continue
                inputs.append(helper.make_tensor_value_info(name, FLOAT, [batch, *shape]))
                if len(shape) == 1:
                    # Layers read the [N, C, 1, 1] form under the input's name.
                    spatial = ctx.fresh(f"{name}__nchw")
                    axes = ctx.int64s([2, 3], hint="axes")
                    nodes.append(ctx.node("Unsqueeze", [name, axes], [spatial]))
                    renames[name] = spatial
                    ctx.set_rank(spatial, 4)
                ctx.set_rank(name, 4 if len(shape) == 3 else 2)
        elif kind is None:
            raise InvalidModelError(f"input {name!r} has no type")
        else:
            # Other feature types (strings, dictionaries) never feed a neural network.
            continue
    if sequences:
        raise InvalidModelError(
            f"sequence inputs {sorted(sequences)} are not rank-5-mapped multi-array inputs"
        )
    return inputs, nodes, renames


def _sequence_input(
    ctx: ConvertContext, name: str, shape: list[int], length: int, batch: int | str
) -> tuple[onnx.ValueInfoProto, list[onnx.NodeProto], str]:
    """A rank-5-mapped input fed as a sequence: ``[N, Seq, *shape]``, read by the layers
    as the ``[N, Seq, C, H, W]`` blob (see ``layers.reshape.sequence_blob``)."""
    if int(length) < 1:
        raise InvalidModelError(f"sequence length of input {name!r} must be >= 1, got {length}")
    info = helper.make_tensor_value_info(name, FLOAT, [batch, int(length), *shape])
    ctx.set_rank(name, 2 + len(shape))
    if len(shape) == 3:
        return info, [], name
    spatial = ctx.fresh(f"{name}__seq")
    ctx.set_rank(spatial, 5)
    axes = ctx.int64s([3, 4], hint="axes")
    return info, [ctx.node("Unsqueeze", [name, axes], [spatial])], spatial


def _scaler_folds(
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


def _scaled_convolution(layer: Any, scale: float) -> Any:
    """A copy of a convolution layer with its weights multiplied by ``scale``."""
    from ..coreml.weights import decode_layer_weights, encode_float32

    folded = type(layer)()
    folded.CopyFrom(layer)
    weights = decode_layer_weights(layer).astype(np.float32) * np.float32(scale)
    folded.convolution.weights.CopyFrom(encode_float32(weights))
    return folded


def _preprocessing(
    spec: Any, nn: Any, ctx: ConvertContext, folded: Mapping[str, float] | None = None
) -> tuple[list, dict[str, str]]:
    """Nodes for the scaler / mean-image steps; returns them and input → blob renames.
    A scaler of an input in ``folded`` (see :func:`_scaler_folds`) adds ``bias / scale``
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
        c, h, w = _image_dims(image_inputs[name])
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


def _writing_renamed(layer: Any, ctx: ConvertContext, renames: dict[str, str]) -> Any:
    """``layer`` writing fresh tensors (a copy); ``renames`` then points its outputs
    there. For blobs the network writes more than once (a loop updates them)."""
    renamed = type(layer)()
    renamed.CopyFrom(layer)
    del renamed.output[:]
    for blob in layer.output:
        renames[blob] = ctx.fresh(blob)
        renamed.output.append(renames[blob])
    return renamed


def _reading_renamed(layer: Any, renames: dict[str, str]) -> Any:
    """``layer`` reading the preprocessed blobs where its inputs were renamed: a copy
    then, so the caller's spec is never edited."""
    if not renames or not any(blob in renames for blob in layer.input):
        return layer
    renamed = type(layer)()
    renamed.CopyFrom(layer)
    del renamed.input[:]
    renamed.input.extend(renames.get(blob, blob) for blob in layer.input)
    return renamed


def compile_network(
    spec: Any,
    *,
    stop_before: int | None = None,
    outputs: Sequence[str] | None = None,
    batch: int | None = None,
    sequences: Mapping[str, int] | None = None,
) -> onnx.ModelProto:
    """Compile a neural network spec (plain, classifier or regressor) to ONNX.

    ``stop_before`` keeps only layers ``[0, stop_before)``; ``outputs`` names the blobs
    the graph returns (default: see :func:`default_outputs`); ``batch`` fixes the batch
    size (default: a free dimension). ``sequences`` maps rank-5-mapped multi-array
    inputs to a sequence length: such an input is fed as ``[N, Seq, *shape]``, what
    Core ML takes as a ``[Seq, 1, C, H, W]`` array (embeddings over a sentence, a
    style-mixing vector). Raises ``UnsupportedLayerError`` for a layer
    without converter and ``InvalidModelError`` (naming the layer) for shape or
    structure problems.
    """
    nn = network_of(spec)
    layers = list(nn.layers)
    if stop_before is not None and not 0 <= stop_before <= len(layers):
        raise InvalidModelError(f"stop_before={stop_before} outside 0..{len(layers)}")
    selected = layers if stop_before is None else layers[:stop_before]
    # Refuse unsupported layers first, so a model is never half-run.
    converters = [converter_for(layer) for layer in selected]
    for inner in nested_layers(selected):
        converter_for(inner)
    wanted = (
        list(outputs) if outputs is not None else default_outputs(spec, stop_before=stop_before)
    )

    ctx = ConvertContext(opset=OPSET)
    ctx.classic_sequences = nn.arrayInputShapeMapping != _EXACT_ARRAY_MAPPING
    batch_dim: int | str = batch if batch is not None else BATCH_DIM
    graph_inputs, nodes, renames = _add_inputs(spec, nn, ctx, batch_dim, sequences)
    ctx.begin_graph(graph_inputs, nodes)
    folds = _scaler_folds(spec, nn, selected, wanted)
    scaled_layers = {index: scale for index, scale in folds.values()}
    pre_nodes, pre_renames = _preprocessing(
        spec, nn, ctx, {name: scale for name, (_, scale) in folds.items()}
    )
    ctx.extend_graph(pre_nodes)
    renames.update(pre_renames)
    # What the control-flow converters (layers.control) read about the network around
    # them; a blob written more than once gets a fresh tensor per write (renamed).
    ctx.network_layers, ctx.network_outputs, ctx.renames = selected, wanted, renames
    several = rewritten(selected)

    for index, (layer, convert) in enumerate(zip(selected, converters, strict=False)):
        if index in scaled_layers:
            layer = _scaled_convolution(layer, scaled_layers[index])
        ctx.layer, ctx.layer_index = layer, index
        for blob in layer.output:
            ctx.reserve(blob)
        layer = _reading_renamed(layer, renames)
        if several.intersection(layer.output):
            layer = _writing_renamed(layer, ctx, renames)
        ctx.extend_graph(run_converter(convert, layer, ctx))
        for blob in layer.output:
            if not ctx.has_blob(renames.get(blob, blob)):
                raise InvalidModelError(
                    f"layer {layer.name!r} did not produce its output {blob!r}", layer=layer.name
                )
    ctx.layer = None

    graph_outputs = []
    taken = {i.name for i in graph_inputs} | {o for n in ctx.graph_nodes for o in n.output}
    for blob in wanted:
        source = renames.get(blob, blob)
        if not ctx.has_blob(source):
            raise InvalidModelError(f"output {blob!r} is not produced by the compiled layers")
        if source != blob:
            # A blob renamed at each write keeps its own name as the output.
            target = f"{blob}__out" if blob in taken else blob
            ctx.extend_graph([ctx.node("Identity", [source], [target])])
            ctx.set_rank(target, ctx.rank(source))
            source = target
        graph_outputs.append(
            helper.make_tensor_value_info(source, FLOAT, [None] * ctx.rank(source))
        )

    graph = helper.make_graph(
        ctx.graph_nodes, "mlupdated", graph_inputs, graph_outputs, initializer=ctx.initializers
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mlupdated",
        ir_version=IR_VERSION,
    )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InvalidModelError(f"compiled graph is invalid: {exc}") from exc
    _check_shapes(model)
    return model


_NODE_NAME = re.compile(r"node name: ([^)]*?)/[A-Za-z]+__\d+")


def _check_shapes(model: onnx.ModelProto) -> None:
    """Refuse a network whose shapes do not fit together (a weight of the wrong size
    for its input, a concat of unequal sizes...) now, naming the layer, rather than
    when onnxruntime loads or runs it."""
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # onnx raises InferenceError, or RuntimeError from C++
        found = _NODE_NAME.search(str(exc))
        layer = found.group(1) if found else None
        where = f"layer {layer!r}: " if layer else ""
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InvalidModelError(f"{where}shapes do not fit: {detail}", layer=layer) from exc
