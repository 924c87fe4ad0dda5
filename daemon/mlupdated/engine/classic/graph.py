"""The small ONNX graph each classic model becomes, and the helpers its builders share:
inputs (batch first), labels, the probability transforms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import InvalidModelError, UnsupportedModelError

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
OPSET = 17
IR_VERSION = 8
BATCH_DIM = "N"


# --- the graph under construction ---------------------------------------------------------


class Graph:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        # Element type of each tensor made so far (what is not here is double).
        self.types: dict[str, int] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def const(self, array: Any, *, hint: str = "const") -> str:
        arr = np.asarray(array)
        name = self.fresh(hint)
        if arr.dtype.kind in "OUS":
            tensor = helper.make_tensor(
                name, TensorProto.STRING, list(arr.shape), [str(v).encode() for v in arr.flat]
            )
        else:
            tensor = numpy_helper.from_array(arr, name=name)
        self.initializers.append(tensor)
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        *,
        ml: bool = False,
        out_type: int | None = None,
        **attrs: Any,
    ) -> str:
        out = self.fresh(op_type.lower())
        if op_type == "Cast":
            out_type = attrs["to"]
        if out_type is not None:
            self.types[out] = out_type
        self.nodes.append(
            helper.make_node(
                op_type,
                inputs,
                [out],
                name=self.fresh(f"{self.kind}/{op_type}"),
                domain=ML_DOMAIN if ml else "",
                **attrs,
            )
        )
        return out


def feature_width(feature: Any) -> int | None:
    """Number of values in one example of a numeric feature (None: not fixed)."""
    kind = feature.type.WhichOneof("Type")
    if kind in ("doubleType", "int64Type", "stringType"):
        return 1
    if kind == "multiArrayType":
        shape = [int(d) for d in feature.type.multiArrayType.shape]
        return int(np.prod(shape)) if shape else None
    return None


def declare_input(g: Graph, feature: Any, width: int | None = None) -> str:
    kind = feature.type.WhichOneof("Type")
    name = feature.name
    if kind == "doubleType":
        info = helper.make_tensor_value_info(name, TensorProto.DOUBLE, [BATCH_DIM, 1])
    elif kind == "int64Type":
        info = helper.make_tensor_value_info(name, TensorProto.INT64, [BATCH_DIM, 1])
    elif kind == "stringType":
        info = helper.make_tensor_value_info(name, TensorProto.STRING, [BATCH_DIM, 1])
    elif kind == "multiArrayType":
        info = helper.make_tensor_value_info(
            name, TensorProto.DOUBLE, [BATCH_DIM, feature_width(feature)]
        )
    elif kind == "dictionaryType" and width is not None:
        # A sparse vector ({index: value}) fed as its dense form (see feed_value).
        info = helper.make_tensor_value_info(name, TensorProto.DOUBLE, [BATCH_DIM, width])
    else:
        raise UnsupportedModelError(
            f"a {g.kind} model cannot take input {name!r} of type {kind or 'none'}"
        )
    g.inputs.append(info)
    g.types[name] = info.type.tensor_type.elem_type
    return name


def numeric_input(g: Graph, spec: Any) -> str:
    """All the model's inputs as one double ``[N, D]`` tensor (concatenated in order)."""
    names = []
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "stringType":
            raise InvalidModelError(f"{g.kind} input {feature.name!r} is a string, not a number")
        name = declare_input(g, feature)
        if feature.type.WhichOneof("Type") == "int64Type":
            name = g.op("Cast", [name], to=TensorProto.DOUBLE)
        names.append(name)
    if not names:
        raise InvalidModelError(f"the {g.kind} model has no input")
    if len(names) == 1:
        return names[0]
    return g.op("Concat", names, axis=1, out_type=TensorProto.DOUBLE)


def single_input(g: Graph, spec: Any) -> tuple[str, Any]:
    inputs = list(spec.description.input)
    if len(inputs) != 1:
        raise InvalidModelError(f"a {g.kind} model takes one input, this one has {len(inputs)}")
    return declare_input(g, inputs[0]), inputs[0]


def enum_name(message: Any, field: str) -> str:
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    return enum.values_by_number[value].name if value in enum.values_by_number else str(value)


def class_labels(message: Any, kind: str) -> np.ndarray:
    which = message.WhichOneof("ClassLabels")
    labels = None
    if which == "int64ClassLabels":
        labels = np.asarray([int(v) for v in message.int64ClassLabels.vector], dtype=np.int64)
    elif which == "stringClassLabels":
        labels = np.asarray([str(v) for v in message.stringClassLabels.vector], dtype=object)
    if labels is None or not len(labels):
        raise InvalidModelError(f"the {kind} has no class labels")
    return labels


def sigmoid(g: Graph, x: str) -> str:
    return g.op("Sigmoid", [x])


def probit(g: Graph, x: str) -> str:
    # Phi(x) = (1 + erf(x / sqrt 2)) / 2
    scaled = g.op("Mul", [x, g.const(np.float64(1.0 / np.sqrt(2.0)))])
    return g.op(
        "Mul",
        [g.op("Add", [g.op("Erf", [scaled]), g.const(np.float64(1))]), g.const(np.float64(0.5))],
    )


def binary(g: Graph, p1: str) -> str:
    """[N, 1] probability of the second class -> [N, 2] probabilities."""
    p0 = g.op("Sub", [g.const(np.float64(1)), p1])
    return g.op("Concat", [p0, p1], axis=1)


def label_of(g: Graph, probs: str, labels: np.ndarray) -> str:
    index = g.op("ArgMax", [probs], axis=1, keepdims=0, out_type=TensorProto.INT64)
    return g.op("Gather", [g.const(labels, hint="labels"), index], axis=0, out_type=type_of(labels))


def type_of(labels: np.ndarray) -> int:
    return TensorProto.STRING if labels.dtype == object else TensorProto.INT64


def input_width(spec: Any) -> int | None:
    dims = [feature_width(f) for f in spec.description.input]
    return None if any(d is None for d in dims) else sum(d for d in dims if d is not None)


def only_output(spec: Any) -> str:
    outputs = list(spec.description.output)
    if not outputs:
        raise InvalidModelError(f"the {spec.WhichOneof('Type')} model has no output")
    name = spec.description.predictedFeatureName or outputs[0].name
    return name
