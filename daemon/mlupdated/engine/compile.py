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

import onnx
from onnx import helper

from ..coreml.image_tensor import multiarray_shape
from ..errors import InvalidModelError
from .dataflow import nested_layers, rewritten
from .network import (
    NEURAL_NETWORK_KINDS,
    OPSET,
    default_outputs,
    network_of,
    probabilities_blob,
)
from .preprocess import image_dims, preprocessing, scaled_convolution, scaler_folds
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
            c, h, w = image_dims(feature)
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
    folds = scaler_folds(spec, nn, selected, wanted)
    scaled_layers = {index: scale for index, scale in folds.values()}
    pre_nodes, pre_renames = preprocessing(
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
            layer = scaled_convolution(layer, scaled_layers[index])
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
