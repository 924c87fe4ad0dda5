"""The converter registry: one function per Core ML layer family, keyed by the
layer's ``oneof`` name in ``NeuralNetworkLayer`` (``"convolution"``, ``"pooling"``...).

Every converter has the same signature::

    @converts("convolution", "deconvolution")
    def convert_convolution(layer, ctx: ConvertContext) -> list[onnx.NodeProto]: ...

It reads the layer's parameters (and the spec's defaults, explicitly), adds weights
through ``ctx.weights``/``ctx.const`` and returns the ONNX nodes that compute the
layer's outputs from its inputs. Input checks raise our errors (``InvalidModelError``,
``UnsupportedLayerError``), never ``assert``.

Tensor layout convention (the whole engine relies on it):

* every blob in the ONNX graph carries the batch as axis 0;
* a blob produced by a "classic" (rank-3 Core ML) layer is ``[N, C, H, W]``; a vector
  such as innerProduct's output is ``[N, C, 1, 1]``;
* a blob produced by an ND layer (spec v4 ``*ND``/``*Static``/``batchedMatMul``...)
  has the rank Core ML gives it, whose axis 0 is the batch (coremltools' converters
  write shapes with a leading 1 there; converters rewrite it to the real batch);
* ``ctx.rank(name)`` says the rank of any blob; converters set the rank of what they
  produce with ``ctx.set_rank``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import InvalidModelError, MlupdatedError, UnsupportedLayerError

Converter = Callable[[Any, "ConvertContext"], list[onnx.NodeProto]]

_CONVERTERS: dict[str, Converter] = {}
# Layer types the engine refuses for a known reason (one line each), rather than with
# the generic "cannot run" and the list of what it can.
_REFUSALS: dict[str, str] = {}


def converts(*layer_types: str) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ``layer_types``."""

    def register(func: Converter) -> Converter:
        for layer_type in layer_types:
            if layer_type in _CONVERTERS:
                raise RuntimeError(
                    f"two converters for layer type {layer_type!r}: "
                    f"{_CONVERTERS[layer_type].__module__} and {func.__module__}"
                )
            _CONVERTERS[layer_type] = func
        return func

    return register


def refuses(layer_type: str, reason: str) -> None:
    """Record why ``layer_type`` is refused (a layer type has a converter or a reason)."""
    if layer_type in _CONVERTERS or layer_type in _REFUSALS:
        raise RuntimeError(f"layer type {layer_type!r} already has a converter or a refusal")
    _REFUSALS[layer_type] = reason


def supported_layer_types() -> tuple[str, ...]:
    """The layer types (``oneof`` names) the engine can run, sorted."""
    _load_converters()
    return tuple(sorted(_CONVERTERS))


def converter_for(layer: Any) -> Converter:
    """The converter of ``layer``, or ``UnsupportedLayerError`` naming it."""
    _load_converters()
    layer_type = layer.WhichOneof("layer")
    try:
        return _CONVERTERS[layer_type]
    except KeyError:
        if layer_type in _REFUSALS:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} has type {layer_type!r}, which mlupdated cannot run: "
                f"{_REFUSALS[layer_type]}",
                layer=layer.name,
                layer_type=str(layer_type),
            ) from None
        supported = supported_layer_types()
        raise UnsupportedLayerError(
            f"layer {layer.name!r} has type {layer_type!r}, which mlupdated cannot run "
            f"(supported: {', '.join(supported)})",
            layer=layer.name,
            layer_type=str(layer_type),
            supported=supported,
        ) from None


def run_converter(
    convert: Converter, layer: Any, ctx: ConvertContext, *, named: Any = None
) -> list[onnx.NodeProto]:
    """``convert(layer, ctx)``; a converter's own slip on a malformed layer (a missing
    field, a wrong shape) becomes one ``InvalidModelError`` line naming ``named`` (the
    layer as the model has it, when ``layer`` is a renamed copy)."""
    named = layer if named is None else named
    try:
        return convert(layer, ctx)
    except MlupdatedError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidModelError(
            f"layer {named.name!r} ({named.WhichOneof('layer')}) cannot be compiled: {exc}",
            layer=named.name,
        ) from exc


def _load_converters() -> None:
    # Importing the package fills the registry; the import is cached after the first call.
    from . import layers  # noqa: F401


class ConvertContext:
    """What a converter may use while turning one layer into ONNX nodes.

    It owns the initializers (weights) and the naming of intermediate tensors, and
    records the rank of every blob (see the module docstring for the layout).
    """

    def __init__(self, *, opset: int) -> None:
        self.opset = opset
        self.initializers: list[onnx.TensorProto] = []
        self._ranks: dict[str, int] = {}
        self._names: set[str] = set()
        self._counter = 0
        self.layer: Any = None  # the layer being converted, for error messages
        # A rank-5-mapped (classic) network: its rank-5 blobs are [N, Seq, C, H, W]
        # sequences (see layers.reshape.sequence_blob), not ND tensors.
        self.classic_sequences = False

    # -- names -------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A tensor name not used anywhere else in the graph."""
        while True:
            self._counter += 1
            name = f"{hint}__{self._counter}"
            if name not in self._names:
                self._names.add(name)
                return name

    def reserve(self, name: str) -> None:
        """Mark a (blob) name as taken so ``fresh`` never returns it."""
        self._names.add(name)

    # -- ranks -------------------------------------------------------------------
    def rank(self, blob: str) -> int:
        """The ONNX rank (batch axis included) of a blob already produced."""
        try:
            return self._ranks[blob]
        except KeyError:
            layer = getattr(self.layer, "name", None)
            raise InvalidModelError(
                f"blob {blob!r} is used before any layer or input produces it", layer=layer
            ) from None

    def set_rank(self, blob: str, rank: int) -> None:
        """Record the ONNX rank (batch axis included) of a blob."""
        self._ranks[blob] = rank

    def has_blob(self, blob: str) -> bool:
        """Whether a layer or input has produced ``blob`` so far."""
        return blob in self._ranks

    # -- constants -----------------------------------------------------------------
    def const(self, array: np.ndarray | list | float | int, *, hint: str, dtype=None) -> str:
        """Add ``array`` as an initializer; return its tensor name."""
        arr = np.asarray(array, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(arr, name=name))
        return name

    def int64s(self, values, *, hint: str) -> str:
        """An int64 1-D initializer (shapes, axes, pads)."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint=hint)

    def weights(self, params: Any, shape: tuple[int, ...], *, hint: str) -> str:
        """Decode a ``WeightParams`` (float32/float16/quantized) into a float32
        initializer of ``shape``; return its name."""
        from ..coreml.weights import decode_weights

        layer = getattr(self.layer, "name", None)
        values = decode_weights(params, count=int(np.prod(shape)) if shape else 1, layer=layer)
        return self.const(values.reshape(shape).astype(np.float32), hint=hint)

    # -- nodes -------------------------------------------------------------------
    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
        """An ONNX node with a unique name derived from the current layer."""
        base = getattr(self.layer, "name", "node") or "node"
        return helper.make_node(
            op_type, inputs, outputs, name=self.fresh(f"{base}/{op_type}"), **attrs
        )

    # -- the graph so far (filled by the compiler) -------------------------------------
    def begin_graph(self, inputs: list[onnx.ValueInfoProto], nodes: list[onnx.NodeProto]) -> None:
        """Start the graph with its inputs (and the nodes that adapt them)."""
        self.graph_inputs = list(inputs)
        self.graph_nodes: list[onnx.NodeProto] = []
        self.extend_graph(nodes)

    def extend_graph(self, nodes: list[onnx.NodeProto]) -> None:
        """Append the nodes a converter returned."""
        self.graph_nodes.extend(nodes)
        self._shapes_valid = False

    def static_shape(self, blob: str) -> list[int | None]:
        """The shape of a blob already produced, by ONNX shape inference over the graph
        so far; ``None`` for a dimension that is not known at compile time (the batch).

        Converters that need a spatial size (Core ML's "same" and "includeLastPixel"
        padding rules) use it; everything else stays shape-agnostic.
        """
        if not getattr(self, "_shapes_valid", False):
            # Float weights enter as declared inputs (shape only): inference needs the
            # values of small integer tensors (shapes, axes, pads), never of weights.
            small = [t for t in self.initializers if t.data_type != TensorProto.FLOAT]
            declared = [
                helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                for t in self.initializers
                if t.data_type == TensorProto.FLOAT
            ]
            graph = helper.make_graph(
                self.graph_nodes, "partial", self.graph_inputs + declared, [], initializer=small
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
            model.ir_version = 8
            try:
                inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            except Exception as exc:  # onnx raises its own InferenceError and others
                layer = getattr(self.layer, "name", None)
                raise InvalidModelError(
                    f"shapes before layer {layer!r} are inconsistent: {exc}", layer=layer
                ) from exc
            shapes: dict[str, list[int | None]] = {}
            for info in list(inferred.graph.value_info) + list(inferred.graph.input):
                if info.type.tensor_type.HasField("shape"):
                    shapes[info.name] = [
                        d.dim_value if d.HasField("dim_value") else None
                        for d in info.type.tensor_type.shape.dim
                    ]
            self._shapes = shapes
            self._shapes_valid = True
        try:
            return list(self._shapes[blob])
        except KeyError:
            layer = getattr(self.layer, "name", None)
            raise InvalidModelError(
                f"the shape of blob {blob!r} cannot be inferred at compile time", layer=layer
            ) from None


FLOAT = TensorProto.FLOAT
