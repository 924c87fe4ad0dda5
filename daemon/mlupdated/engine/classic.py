"""Core ML's classic model types run through onnxruntime.

Each model (a pipeline stage, or a whole model) becomes its own small ONNX graph. The
operators that carry the model's logic are onnxruntime's ONNX-ML ones (domain
``ai.onnx.ml``): ``TreeEnsembleRegressor`` (double thresholds) for tree ensembles,
``SVMClassifier``/``SVMRegressor`` for support vector machines (libsvm's rules,
Platt probabilities included), ``OneHotEncoder``, ``ArrayFeatureExtractor`` and
``CategoryMapper``. The linear arithmetic (GLM weights, scaler, normalizer, imputer,
feature vectorizer, the probability transforms) is written with standard operators in
double: the ONNX-ML versions of those answer in float32, which loses digits and can
move a value across a tree's threshold in a later stage. A dictionary vectorizer and
the identity model are plain NumPy (onnxruntime's ``DictVectorizer`` takes one map,
not a batch).

Features travel between stages with the batch first: a double or int64 feature is a
``[N]`` array, a string feature a ``[N]`` object array, a multi-array ``[N, *shape]``,
a dictionary a list of N dicts. A graph takes doubles and multi-arrays as double
``[N, D]``, int64 as ``[N, 1]`` and strings as ``[N, 1]``.

Model types that only Apple's frameworks run (Vision's feature prints, the Natural
Language and Sound Analysis models, linked models...) are refused with one line that
names the type (``coreml.spec.apple_only_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..coreml.spec import APPLE_ONLY_KINDS, CLASSIC_KINDS, CLASSIFIER_KINDS, apple_only_reason
from ..errors import InvalidModelError, MlupdatedError, UnsupportedModelError
from .runtime import Session

__all__ = ["APPLE_ONLY_KINDS", "CLASSIC_KINDS", "ClassicStage", "apple_only_reason"]

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
OPSET = 17
IR_VERSION = 8
BATCH_DIM = "N"


@dataclass
class Classified:
    """A classifier stage's result for a batch (labels and per-example probabilities)."""

    labels: list[Any]
    probabilities: list[dict[Any, float]]


# --- the graph under construction ---------------------------------------------------------


class _Graph:
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


def _dims(feature: Any) -> int | None:
    """Number of values in one example of a numeric feature (None: not fixed)."""
    kind = feature.type.WhichOneof("Type")
    if kind in ("doubleType", "int64Type", "stringType"):
        return 1
    if kind == "multiArrayType":
        shape = [int(d) for d in feature.type.multiArrayType.shape]
        return int(np.prod(shape)) if shape else None
    return None


def _declare_input(g: _Graph, feature: Any, width: int | None = None) -> str:
    kind = feature.type.WhichOneof("Type")
    name = feature.name
    if kind == "doubleType":
        info = helper.make_tensor_value_info(name, TensorProto.DOUBLE, [BATCH_DIM, 1])
    elif kind == "int64Type":
        info = helper.make_tensor_value_info(name, TensorProto.INT64, [BATCH_DIM, 1])
    elif kind == "stringType":
        info = helper.make_tensor_value_info(name, TensorProto.STRING, [BATCH_DIM, 1])
    elif kind == "multiArrayType":
        info = helper.make_tensor_value_info(name, TensorProto.DOUBLE, [BATCH_DIM, _dims(feature)])
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


def _numeric_input(g: _Graph, spec: Any) -> str:
    """All the model's inputs as one double ``[N, D]`` tensor (concatenated in order)."""
    names = []
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "stringType":
            raise InvalidModelError(f"{g.kind} input {feature.name!r} is a string, not a number")
        name = _declare_input(g, feature)
        if feature.type.WhichOneof("Type") == "int64Type":
            name = g.op("Cast", [name], to=TensorProto.DOUBLE)
        names.append(name)
    if not names:
        raise InvalidModelError(f"the {g.kind} model has no input")
    if len(names) == 1:
        return names[0]
    return g.op("Concat", names, axis=1, out_type=TensorProto.DOUBLE)


def _single_input(g: _Graph, spec: Any) -> tuple[str, Any]:
    inputs = list(spec.description.input)
    if len(inputs) != 1:
        raise InvalidModelError(f"a {g.kind} model takes one input, this one has {len(inputs)}")
    return _declare_input(g, inputs[0]), inputs[0]


def _enum_name(message: Any, field: str) -> str:
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    return enum.values_by_number[value].name if value in enum.values_by_number else str(value)


def _labels(message: Any, kind: str) -> np.ndarray:
    which = message.WhichOneof("ClassLabels")
    labels = None
    if which == "int64ClassLabels":
        labels = np.asarray([int(v) for v in message.int64ClassLabels.vector], dtype=np.int64)
    elif which == "stringClassLabels":
        labels = np.asarray([str(v) for v in message.stringClassLabels.vector], dtype=object)
    if labels is None or not len(labels):
        raise InvalidModelError(f"the {kind} has no class labels")
    return labels


def _sigmoid(g: _Graph, x: str) -> str:
    return g.op("Sigmoid", [x])


def _probit(g: _Graph, x: str) -> str:
    # Phi(x) = (1 + erf(x / sqrt 2)) / 2
    scaled = g.op("Mul", [x, g.const(np.float64(1.0 / np.sqrt(2.0)))])
    return g.op(
        "Mul",
        [g.op("Add", [g.op("Erf", [scaled]), g.const(np.float64(1))]), g.const(np.float64(0.5))],
    )


def _binary(g: _Graph, p1: str) -> str:
    """[N, 1] probability of the second class -> [N, 2] probabilities."""
    p0 = g.op("Sub", [g.const(np.float64(1)), p1])
    return g.op("Concat", [p0, p1], axis=1)


def _label_of(g: _Graph, probs: str, labels: np.ndarray) -> str:
    index = g.op("ArgMax", [probs], axis=1, keepdims=0, out_type=TensorProto.INT64)
    return g.op(
        "Gather", [g.const(labels, hint="labels"), index], axis=0, out_type=_type_of(labels)
    )


def _type_of(labels: np.ndarray) -> int:
    return TensorProto.STRING if labels.dtype == object else TensorProto.INT64


# --- GLM ---------------------------------------------------------------------------------


def _glm_scores(g: _Graph, x: str, glm: Any, d: int | None) -> tuple[str, int]:
    weights = [list(w.value) for w in glm.weights]
    if not weights:
        raise InvalidModelError(f"the {g.kind} has no weights")
    width = len(weights[0])
    if any(len(w) != width for w in weights) or (d is not None and width != d):
        raise InvalidModelError(
            f"the {g.kind}'s weights have {width} values per row for {d} input values"
        )
    offset = list(glm.offset) or [0.0] * len(weights)
    if len(offset) == 1 and len(weights) > 1:
        offset = offset * len(weights)
    if len(offset) != len(weights):
        raise InvalidModelError(
            f"the {g.kind} has {len(offset)} offsets for {len(weights)} weight rows"
        )
    # y = x W^T + offset in double (onnxruntime's LinearRegressor rounds to float32).
    matrix = np.asarray(weights, dtype=np.float64).T
    product = g.op("MatMul", [x, g.const(matrix, hint="weights")])
    scores = g.op("Add", [product, g.const(np.asarray(offset, np.float64), hint="offset")])
    return scores, len(weights)


def _input_width(spec: Any) -> int | None:
    dims = [_dims(f) for f in spec.description.input]
    return None if any(d is None for d in dims) else sum(d for d in dims if d is not None)


def _glm_regressor(g: _Graph, spec: Any) -> dict[str, str]:
    glm = spec.glmRegressor
    x = _numeric_input(g, spec)
    y, _ = _glm_scores(g, x, glm, _input_width(spec))
    transform = _enum_name(glm, "postEvaluationTransform")
    if transform == "Logit":
        y = _sigmoid(g, y)
    elif transform == "Probit":
        y = _probit(g, y)
    return {_only_output(spec): y}


def _glm_classifier(g: _Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    glm = spec.glmClassifier
    labels = _labels(glm, "GLM classifier")
    x = _numeric_input(g, spec)
    z, rows = _glm_scores(g, x, glm, _input_width(spec))
    transform = _enum_name(glm, "postEvaluationTransform")
    f = _probit(g, z) if transform == "Probit" else _sigmoid(g, z)
    encoding = _enum_name(glm, "classEncoding")
    if rows == 1 and len(labels) == 2:
        probs = _binary(g, f)
    elif rows == len(labels) and encoding == "OneVsRest":
        probs = g.op("Div", [f, g.op("ReduceSum", [f, g.const(np.asarray([1], np.int64))])])
    else:
        raise UnsupportedModelError(
            f"GLM classifier with {rows} weight rows, {len(labels)} classes and {encoding} "
            "encoding is not supported (supported: binary, or one-vs-rest)"
        )
    return _label_of(g, probs, labels), probs, labels


# --- tree ensembles ----------------------------------------------------------------------

_TREE_MODES = {
    "BranchOnValueLessThanEqual": "BRANCH_LEQ",
    "BranchOnValueLessThan": "BRANCH_LT",
    "BranchOnValueGreaterThanEqual": "BRANCH_GTE",
    "BranchOnValueGreaterThan": "BRANCH_GT",
    "BranchOnValueEqual": "BRANCH_EQ",
    "BranchOnValueNotEqual": "BRANCH_NEQ",
    "LeafNode": "LEAF",
}


def _tree_scores(g: _Graph, x: str, params: Any) -> tuple[str, int]:
    """Raw sums of the trees' leaf values plus the base values: float [N, K]."""
    k = int(params.numPredictionDimensions) or 1
    attrs: dict[str, list] = {
        key: []
        for key in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "nodes_missing_value_tracks_true",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    if not params.nodes:
        raise InvalidModelError(f"the {g.kind} has no tree nodes")
    for node in params.nodes:
        mode = _TREE_MODES.get(_enum_name(node, "nodeBehavior"))
        if mode is None:
            raise InvalidModelError(f"tree {node.treeId} node {node.nodeId} has an unknown kind")
        leaf = mode == "LEAF"
        attrs["nodes_treeids"].append(int(node.treeId))
        attrs["nodes_nodeids"].append(int(node.nodeId))
        attrs["nodes_featureids"].append(0 if leaf else int(node.branchFeatureIndex))
        attrs["nodes_values"].append(0.0 if leaf else float(node.branchFeatureValue))
        attrs["nodes_modes"].append(mode)
        attrs["nodes_truenodeids"].append(0 if leaf else int(node.trueChildNodeId))
        attrs["nodes_falsenodeids"].append(0 if leaf else int(node.falseChildNodeId))
        attrs["nodes_missing_value_tracks_true"].append(int(node.missingValueTracksTrueChild))
        for info in node.evaluationInfo if leaf else ():
            if info.evaluationIndex >= k:
                raise InvalidModelError(
                    f"tree {node.treeId} leaf {node.nodeId} writes dimension "
                    f"{info.evaluationIndex} of {k}"
                )
            attrs["target_treeids"].append(int(node.treeId))
            attrs["target_nodeids"].append(int(node.nodeId))
            attrs["target_ids"].append(int(info.evaluationIndex))
            attrs["target_weights"].append(float(info.evaluationValue))
    base = list(params.basePredictionValue) or [0.0] * k
    if len(base) != k:
        raise InvalidModelError(f"the {g.kind} has {len(base)} base values for {k} dimensions")
    values = attrs.pop("nodes_values")
    weights = attrs.pop("target_weights")
    scores = g.op(
        "TreeEnsembleRegressor",
        [x],
        ml=True,
        n_targets=k,
        aggregate_function="SUM",
        post_transform="NONE",
        nodes_values_as_tensor=numpy_helper.from_array(np.asarray(values, np.float64), "v"),
        target_weights_as_tensor=numpy_helper.from_array(np.asarray(weights, np.float64), "w"),
        base_values_as_tensor=numpy_helper.from_array(np.asarray(base, np.float64), "b"),
        **attrs,
    )
    # The thresholds and sums are double inside; the operator's output is float.
    return g.op("Cast", [scores], to=TensorProto.DOUBLE), k


def _tree_regressor(g: _Graph, spec: Any) -> dict[str, str]:
    tree = spec.treeEnsembleRegressor
    y, _ = _tree_scores(g, _numeric_input(g, spec), tree.treeEnsemble)
    transform = _enum_name(tree, "postEvaluationTransform")
    if transform == "Regression_Logistic":
        y = _sigmoid(g, y)
    elif transform != "NoTransform":
        raise UnsupportedModelError(f"tree ensemble regressor with {transform} is not supported")
    return {_only_output(spec): y}


def _tree_classifier(g: _Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    tree = spec.treeEnsembleClassifier
    labels = _labels(tree, "tree ensemble classifier")
    s, k = _tree_scores(g, _numeric_input(g, spec), tree.treeEnsemble)
    transform = _enum_name(tree, "postEvaluationTransform")
    c = len(labels)
    if transform == "Regression_Logistic":
        s = _sigmoid(g, s)
    if k == 1 and c == 2 and transform in ("NoTransform", "Regression_Logistic"):
        probs = _binary(g, s)
    elif k == c and transform == "Regression_Logistic":
        probs = s
    elif k == c and transform == "NoTransform":
        # Summed per-tree class shares (a random forest sums one share vector per
        # tree): normalized so the probabilities add up to 1.
        total = g.op("ReduceSum", [s, g.const(np.asarray([1], np.int64))], keepdims=1)
        safe = g.op(
            "Where",
            [
                g.op("Equal", [total, g.const(np.float64(0))], out_type=TensorProto.BOOL),
                g.const(np.float64(1)),
                total,
            ],
        )
        probs = g.op("Div", [s, safe])
    elif k == c and transform == "Classification_SoftMax":
        probs = g.op("Softmax", [s], axis=1)
    elif k == c - 1 and transform == "Classification_SoftMaxWithZeroClassReference":
        zero = g.op(
            "Mul",
            [
                g.op("Slice", [s, *(g.const(np.asarray([v], np.int64)) for v in (0, 1, 1))]),
                g.const(np.float64(0)),
            ],
        )
        probs = g.op("Softmax", [g.op("Concat", [zero, s], axis=1)], axis=1)
    else:
        raise UnsupportedModelError(
            f"tree ensemble classifier with {k} prediction dimensions for {c} classes and "
            f"{transform} is not supported"
        )
    return _label_of(g, probs, labels), probs, labels


# --- support vector machines -------------------------------------------------------------


def _kernel(svm: Any) -> tuple[str, list[float]]:
    which = svm.kernel.WhichOneof("kernel")
    if which in (None, "linearKernel"):
        return "LINEAR", [0.0, 0.0, 0.0]
    if which == "rbfKernel":
        return "RBF", [float(svm.kernel.rbfKernel.gamma), 0.0, 0.0]
    if which == "polyKernel":
        poly = svm.kernel.polyKernel
        return "POLY", [float(poly.gamma), float(poly.c), float(poly.degree)]
    sig = svm.kernel.sigmoidKernel
    return "SIGMOID", [float(sig.gamma), float(sig.c), 0.0]


def _support_vectors(svm: Any, d: int | None, kind: str) -> np.ndarray:
    which = svm.WhichOneof("supportVectors")
    if which == "denseSupportVectors":
        rows = [list(v.values) for v in svm.denseSupportVectors.vectors]
        if not rows:
            raise InvalidModelError(f"the {kind} has no support vectors")
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            raise InvalidModelError(f"the {kind}'s support vectors differ in length")
        return np.asarray(rows, dtype=np.float64)
    if which == "sparseSupportVectors":
        vectors = svm.sparseSupportVectors.vectors
        # libsvm's sparse indices start at 1.
        width = d or max((n.index for v in vectors for n in v.nodes), default=0)
        out = np.zeros((len(vectors), width), dtype=np.float64)
        for i, v in enumerate(vectors):
            for n in v.nodes:
                if not 1 <= n.index <= width:
                    raise InvalidModelError(f"the {kind}'s support vector {i} has index {n.index}")
                out[i, n.index - 1] = n.value
        return out
    raise InvalidModelError(f"the {kind} has no support vectors")


def _svm_regressor(g: _Graph, spec: Any) -> dict[str, str]:
    svm = spec.supportVectorRegressor
    x = _numeric_input(g, spec)
    vectors = _support_vectors(svm, _input_width(spec), "support vector regressor")
    coefficients = list(svm.coefficients.alpha)
    if len(coefficients) != len(vectors):
        raise InvalidModelError(
            f"the support vector regressor has {len(coefficients)} coefficients for "
            f"{len(vectors)} support vectors"
        )
    kernel, params = _kernel(svm)
    # onnxruntime's SVMRegressor takes float only.
    x = g.op("Cast", [x], to=TensorProto.FLOAT)
    y = g.op(
        "SVMRegressor",
        [x],
        ml=True,
        coefficients=[float(v) for v in coefficients],
        kernel_type=kernel,
        kernel_params=params,
        n_supports=len(vectors),
        # Core ML keeps libsvm's rho (f = sum - rho); onnxruntime adds its rho.
        rho=[-float(svm.rho)],
        support_vectors=vectors.reshape(-1).tolist(),
    )
    return {_only_output(spec): g.op("Cast", [y], to=TensorProto.DOUBLE)}


def _svm_classifier(g: _Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    svm = spec.supportVectorClassifier
    labels = _labels(svm, "support vector classifier")
    x = _numeric_input(g, spec)
    vectors = _support_vectors(svm, _input_width(spec), "support vector classifier")
    per_class = [int(v) for v in svm.numberOfSupportVectorsPerClass]
    c = len(labels)
    if len(per_class) != c or sum(per_class) != len(vectors):
        raise InvalidModelError(
            f"the support vector classifier has {sum(per_class)} vectors over "
            f"{len(per_class)} classes but {len(vectors)} vectors and {c} labels"
        )
    rows = [list(r.alpha) for r in svm.coefficients]
    if len(rows) != c - 1 or any(len(r) != len(vectors) for r in rows):
        raise InvalidModelError(
            "the support vector classifier's coefficients do not match its support vectors"
        )
    if len(svm.rho) != c * (c - 1) // 2:
        raise InvalidModelError(
            f"the support vector classifier has {len(svm.rho)} rho values for {c} classes"
        )
    kernel, params = _kernel(svm)
    attrs: dict[str, Any] = dict(
        coefficients=[float(v) for r in rows for v in r],
        kernel_type=kernel,
        kernel_params=params,
        rho=[-float(v) for v in svm.rho],
        support_vectors=vectors.reshape(-1).tolist(),
        vectors_per_class=per_class,
        # onnxruntime returns labels; the label of the best class index is what we
        # need, so the classes are numbered here and mapped to the labels below.
        classlabels_ints=list(range(c)),
    )
    has_probabilities = len(svm.probA) > 0
    if has_probabilities:
        attrs["prob_a"] = [float(v) for v in svm.probA]
        attrs["prob_b"] = [float(v) for v in svm.probB]
    label_index = g.fresh("svm_label")
    scores = g.fresh("svm_scores")
    g.nodes.append(
        helper.make_node(
            "SVMClassifier",
            [x],
            [label_index, scores],
            name=g.fresh("svm/SVMClassifier"),
            domain=ML_DOMAIN,
            **attrs,
        )
    )
    label = g.op(
        "Gather", [g.const(labels, hint="labels"), label_index], axis=0, out_type=_type_of(labels)
    )
    if has_probabilities:
        probs = g.op("Cast", [scores], to=TensorProto.DOUBLE)
    else:
        # Without Platt's coefficients there are no probabilities: one-hot of the vote.
        depth = g.const(np.asarray(c, np.int64))
        values = g.const(np.asarray([0.0, 1.0], np.float32))
        one_hot = g.op("OneHot", [label_index, depth, values], axis=-1, out_type=TensorProto.FLOAT)
        probs = g.op("Cast", [one_hot], to=TensorProto.DOUBLE)
    return label, probs, labels


# --- transformers ------------------------------------------------------------------------


def _only_output(spec: Any) -> str:
    outputs = list(spec.description.output)
    if not outputs:
        raise InvalidModelError(f"the {spec.WhichOneof('Type')} model has no output")
    name = spec.description.predictedFeatureName or outputs[0].name
    return name


def _normalizer(g: _Graph, spec: Any) -> dict[str, str]:
    x, _ = _single_input(g, spec)
    norm = _enum_name(spec.normalizer, "normType")
    # Written out in double: onnxruntime's Normalizer answers in float32, and its MAX
    # takes the largest signed value where Core ML's LMax takes the largest magnitude.
    if norm == "L1":
        size = g.op("ReduceL1", [x], axes=[1], keepdims=1)
    elif norm == "L2":
        size = g.op("ReduceL2", [x], axes=[1], keepdims=1)
    else:
        size = g.op("ReduceMax", [g.op("Abs", [x])], axes=[1], keepdims=1)
    # A row of zeros stays zeros.
    is_zero = g.op("Equal", [size, g.const(np.float64(0))], out_type=TensorProto.BOOL)
    safe = g.op("Where", [is_zero, g.const(np.float64(1)), size])
    return {_only_output(spec): g.op("Div", [x, safe])}


def _one_hot(g: _Graph, spec: Any) -> dict[str, str]:
    ohe = spec.oneHotEncoder
    x, feature = _single_input(g, spec)
    attrs: dict[str, Any] = {
        "zeros": 1 if _enum_name(ohe, "handleUnknown") == "IgnoreUnknown" else 0
    }
    which = ohe.WhichOneof("CategoryType")
    if which == "stringCategories":
        attrs["cats_strings"] = [str(v) for v in ohe.stringCategories.vector]
    elif which == "int64Categories":
        attrs["cats_int64s"] = [int(v) for v in ohe.int64Categories.vector]
        if feature.type.WhichOneof("Type") == "multiArrayType":
            x = g.op("Cast", [x], to=TensorProto.INT64)
    else:
        raise InvalidModelError("the one-hot encoder has no categories")
    encoded = g.op("OneHotEncoder", [x], ml=True, out_type=TensorProto.FLOAT, **attrs)
    flat = g.op("Flatten", [encoded], axis=1, out_type=TensorProto.FLOAT)
    return {_only_output(spec): g.op("Cast", [flat], to=TensorProto.DOUBLE)}


def _imputer(g: _Graph, spec: Any) -> dict[str, str]:
    imp = spec.imputer
    x, feature = _single_input(g, spec)
    which = imp.WhichOneof("ImputedValue")
    replace = imp.WhichOneof("ReplaceValue")
    if which in ("imputedDoubleValue", "imputedDoubleArray"):
        values = (
            [float(imp.imputedDoubleValue)]
            if which == "imputedDoubleValue"
            else [float(v) for v in imp.imputedDoubleArray.vector]
        )
        if replace not in (None, "replaceDoubleValue"):
            raise UnsupportedModelError(f"imputer of doubles replacing a {replace} value")
        missing = float(imp.replaceDoubleValue) if replace else float("nan")
        # In double (onnxruntime's Imputer takes float32 only): where x is the missing
        # value (NaN: where x is NaN), the imputed value of its column.
        if np.isnan(missing):
            hit = g.op("IsNaN", [x], out_type=TensorProto.BOOL)
        else:
            hit = g.op("Equal", [x, g.const(np.float64(missing))], out_type=TensorProto.BOOL)
        fill = g.const(np.asarray(values, np.float64).reshape(1, -1), hint="imputed")
        return {_only_output(spec): g.op("Where", [hit, fill, x])}
    if which in ("imputedInt64Value", "imputedInt64Array"):
        values = (
            [int(imp.imputedInt64Value)]
            if which == "imputedInt64Value"
            else [int(v) for v in imp.imputedInt64Array.vector]
        )
        if replace != "replaceInt64Value":
            raise UnsupportedModelError("imputer of int64 values without a value to replace")
        if feature.type.WhichOneof("Type") != "int64Type":
            x = g.op("Cast", [x], to=TensorProto.INT64)
        y = g.op(
            "Imputer",
            [x],
            ml=True,
            out_type=TensorProto.INT64,
            imputed_value_int64s=values,
            replaced_value_int64=int(imp.replaceInt64Value),
        )
        return {_only_output(spec): y}
    raise UnsupportedModelError(f"imputer of {which or 'no'} values is not supported")


def _scaler(g: _Graph, spec: Any) -> dict[str, str]:
    sc = spec.scaler
    x, feature = _single_input(g, spec)
    d = _dims(feature)
    shift = [float(v) for v in sc.shiftValue] or [0.0]
    scale = [float(v) for v in sc.scaleValue] or [1.0]
    for what, values in (("shift", shift), ("scale", scale)):
        if len(values) not in (1, d or len(values)):
            raise InvalidModelError(f"the scaler has {len(values)} {what} values for {d} inputs")
    # Core ML: y = (x + shift) * scale, here in double (onnxruntime's Scaler answers
    # in float32, which can move a value across a tree's threshold further on).
    shifted = g.op("Add", [x, g.const(np.asarray(shift, np.float64).reshape(1, -1))])
    y = g.op("Mul", [shifted, g.const(np.asarray(scale, np.float64).reshape(1, -1))])
    return {_only_output(spec): y}


def _feature_vectorizer(g: _Graph, spec: Any) -> dict[str, str]:
    fv = spec.featureVectorizer
    by_name = {f.name: f for f in spec.description.input}
    names, dims = [], []
    declared: dict[str, str] = {}
    for column in fv.inputList:
        feature = by_name.get(column.inputColumn)
        if feature is None:
            raise InvalidModelError(
                f"the feature vectorizer reads {column.inputColumn!r}, which is not an input"
            )
        if column.inputColumn not in declared:
            width = int(column.inputDimensions) or None
            declared[column.inputColumn] = _declare_input(g, feature, width)
        x = declared[column.inputColumn]
        if feature.type.WhichOneof("Type") == "int64Type":
            x = g.op("Cast", [x], to=TensorProto.DOUBLE)
        d = int(column.inputDimensions) or (_dims(feature) or 1)
        known = _dims(feature) if feature.type.WhichOneof("Type") != "dictionaryType" else d
        if known is not None and known != d:
            raise InvalidModelError(
                f"the feature vectorizer takes {d} values of {column.inputColumn!r}, "
                f"which has {known}"
            )
        names.append(x)
        dims.append(d)
    if not names:
        raise InvalidModelError("the feature vectorizer has no input columns")
    # Concatenated in double (onnxruntime's FeatureVectorizer answers in float32).
    y = names[0] if len(names) == 1 else g.op("Concat", names, axis=1)
    if y == names[0]:
        y = g.op("Identity", [y])
    return {_only_output(spec): y}


def _array_feature_extractor(g: _Graph, spec: Any) -> dict[str, str]:
    x, _ = _single_input(g, spec)
    indices = [int(v) for v in spec.arrayFeatureExtractor.extractIndex]
    if not indices:
        raise InvalidModelError("the array feature extractor extracts no index")
    y = g.op(
        "ArrayFeatureExtractor",
        [x, g.const(np.asarray(indices, np.int64))],
        ml=True,
        out_type=g.types[x],
    )
    return {_only_output(spec): y}


def _categorical_mapping(g: _Graph, spec: Any) -> dict[str, str]:
    cm = spec.categoricalMapping
    x, feature = _single_input(g, spec)
    which = cm.WhichOneof("MappingType")
    if which == "stringToInt64Map":
        pairs = sorted(cm.stringToInt64Map.map.items())
    elif which == "int64ToStringMap":
        pairs = sorted((str(v), k) for k, v in cm.int64ToStringMap.map.items())
        pairs = [(s, int(k)) for s, k in pairs]
        if feature.type.WhichOneof("Type") != "int64Type":
            x = g.op("Cast", [x], to=TensorProto.INT64)
    else:
        raise InvalidModelError("the categorical mapping has no map")
    attrs: dict[str, Any] = {
        "cats_strings": [s for s, _ in pairs],
        "cats_int64s": [int(k) for _, k in pairs],
    }
    unknown = cm.WhichOneof("ValueOnUnknown")
    if unknown == "strValue":
        attrs["default_string"] = cm.strValue
    elif unknown == "int64Value":
        attrs["default_int64"] = int(cm.int64Value)
    out_type = TensorProto.INT64 if which == "stringToInt64Map" else TensorProto.STRING
    return {_only_output(spec): g.op("CategoryMapper", [x], ml=True, out_type=out_type, **attrs)}


_BUILDERS = {
    "glmRegressor": _glm_regressor,
    "treeEnsembleRegressor": _tree_regressor,
    "supportVectorRegressor": _svm_regressor,
    "normalizer": _normalizer,
    "oneHotEncoder": _one_hot,
    "imputer": _imputer,
    "scaler": _scaler,
    "featureVectorizer": _feature_vectorizer,
    "arrayFeatureExtractor": _array_feature_extractor,
    "categoricalMapping": _categorical_mapping,
}
_CLASSIFIER_BUILDERS = {
    "glmClassifier": _glm_classifier,
    "treeEnsembleClassifier": _tree_classifier,
    "supportVectorClassifier": _svm_classifier,
}

LABEL_OUTPUT = "__label__"
PROBABILITIES_OUTPUT = "__probabilities__"
_OUTPUT_PREFIX = "out:"


def graph_output(feature: str) -> str:
    """The graph's name for an output feature (a stage may write a feature of the same
    name as its input, e.g. a scaler rewriting ``__feature_vector__`` in place)."""
    return _OUTPUT_PREFIX + feature


def compile_classic(spec: Any) -> tuple[onnx.ModelProto, np.ndarray | None]:
    """The ONNX graph of one classic model (and its class labels, for a classifier).

    A classifier's graph returns ``__label__`` ([N]) and ``__probabilities__``
    ([N, classes], in label order); other models return their output features, named
    by :func:`graph_output`.
    """
    kind = spec.WhichOneof("Type")
    try:
        return _compile(spec, kind)
    except MlupdatedError as exc:
        # Every refusal names the model type.
        if kind not in exc.reason:
            exc.reason = f"{kind}: {exc.reason}"
            exc.args = (exc.reason,)
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModelError(f"the {kind} model cannot be compiled: {detail}") from exc


def _compile(spec: Any, kind: str) -> tuple[onnx.ModelProto, np.ndarray | None]:
    g = _Graph(kind)
    labels = None
    if kind in _CLASSIFIER_BUILDERS:
        label, probs, labels = _CLASSIFIER_BUILDERS[kind](g, spec)
        outputs = {LABEL_OUTPUT: label, PROBABILITIES_OUTPUT: probs}
    elif kind in _BUILDERS:
        outputs = {graph_output(name): tensor for name, tensor in _BUILDERS[kind](g, spec).items()}
    else:
        raise UnsupportedModelError(f"model type '{kind}' is not a classic Core ML model")
    typed = []
    for name, tensor in outputs.items():
        g.nodes.append(helper.make_node("Identity", [tensor], [name]))
        elem = g.types.get(tensor, TensorProto.DOUBLE)
        typed.append(helper.make_tensor_value_info(name, elem, [BATCH_DIM, None]))
    model = _model(g, kind, typed)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        detail = str(exc).strip().splitlines()[0]
        raise InvalidModelError(f"the {kind} model cannot be compiled: {detail}") from exc
    return model, labels


def _model(g: _Graph, kind: str, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        g.nodes, f"mlupdated_{kind}", g.inputs, outputs, initializer=g.initializers
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        producer_name="mlupdated",
        ir_version=IR_VERSION,
    )


# --- running -----------------------------------------------------------------------------


def feed_value(feature: Any, value: Any, n: int, width: int | None = None) -> np.ndarray:
    """A batch of one feature in the form a classic graph takes it (a dictionary as
    the dense vector of ``width`` values its int64 keys index)."""
    kind = feature.type.WhichOneof("Type")
    if kind == "dictionaryType":
        dense = np.zeros((n, width or 0), dtype=np.float64)
        for i, row in enumerate(value):
            for key, item in dict(row).items():
                if not isinstance(key, int | np.integer) or not 0 <= int(key) < dense.shape[1]:
                    raise InvalidModelError(
                        f"feature {feature.name!r} has key {key!r}, not an index below "
                        f"{dense.shape[1]}"
                    )
                dense[i, int(key)] = float(item)
        return dense
    if kind == "stringType":
        return np.asarray([str(v) for v in value], dtype=object).reshape(n, 1)
    if kind == "int64Type":
        return np.asarray(value).astype(np.int64).reshape(n, 1)
    array = np.asarray(value, dtype=np.float64).reshape(n, -1)
    d = _dims(feature)
    if d is not None and array.shape[1] != d:
        raise InvalidModelError(
            f"feature {feature.name!r} has {array.shape[1]} values per example, "
            f"the model expects {d}"
        )
    return array


def output_value(feature: Any, array: np.ndarray, n: int) -> Any:
    """A graph's output as the feature its description declares (batch first)."""
    kind = feature.type.WhichOneof("Type")
    if kind == "doubleType":
        return np.asarray(array, dtype=np.float64).reshape(n)
    if kind == "int64Type":
        return np.asarray(array).astype(np.int64).reshape(n)
    if kind == "stringType":
        return np.asarray(array, dtype=object).reshape(n)
    if kind == "dictionaryType":
        rows = np.asarray(array).reshape(n, -1)
        return [{int(i): float(v) for i, v in enumerate(row) if v != 0} for row in rows]
    array = np.asarray(array, dtype=np.float64).reshape(n, -1)
    shape = [int(d) for d in feature.type.multiArrayType.shape]
    if shape and int(np.prod(shape)) == array.shape[1]:
        return array.reshape(n, *shape)
    return array


def _python_label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class ClassicStage:
    """One classic Core ML model run through its ONNX-ML graph (or NumPy)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.kind = spec.WhichOneof("Type")
        self.is_classifier = self.kind in CLASSIFIER_KINDS
        self.session: Session | None = None
        self.labels: list[Any] = []
        self.widths: dict[str, int] = {}
        if self.kind == "featureVectorizer":
            self.widths = {
                c.inputColumn: int(c.inputDimensions) for c in spec.featureVectorizer.inputList
            }
        if self.kind == "dictVectorizer":
            self._check_dict_vectorizer()
        elif self.kind != "identity":
            model, labels = compile_classic(spec)
            self.session = Session(model)
            if labels is not None:
                self.labels = [_python_label(v) for v in labels]

    def _check_dict_vectorizer(self) -> None:
        dv = self.spec.dictVectorizer
        which = dv.WhichOneof("Map")
        if which == "stringToIndex":
            keys: list[Any] = [str(v) for v in dv.stringToIndex.vector]
        elif which == "int64ToIndex":
            keys = [int(v) for v in dv.int64ToIndex.vector]
        else:
            raise InvalidModelError("the dictionary vectorizer has no keys")
        self.keys = {key: i for i, key in enumerate(keys)}
        if len(self.spec.description.input) != 1:
            raise InvalidModelError("a dictionary vectorizer takes one input")

    def _inputs(self, features: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for feature in self.spec.description.input:
            if feature.name not in features:
                raise InvalidModelError(f"{self.kind} input {feature.name!r} is not provided")
            out[feature.name] = features[feature.name]
        return out

    def run(self, features: dict[str, Any], n: int) -> Classified | None:
        """Compute this stage's outputs into ``features`` (a batch of ``n``); return
        the classification for a classifier."""
        try:
            return self._run(features, n)
        except MlupdatedError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidModelError(
                f"the {self.kind} model cannot take its inputs: {detail}"
            ) from exc

    def _run(self, features: dict[str, Any], n: int) -> Classified | None:
        inputs = self._inputs(features)
        description = self.spec.description
        if self.kind == "identity":
            for src, dst in zip(description.input, description.output, strict=False):
                features[dst.name] = inputs[src.name]
            return None
        if self.kind == "dictVectorizer":
            (value,) = inputs.values()
            out = np.zeros((n, len(self.keys)), dtype=np.float64)
            for i, row in enumerate(value):
                for key, v in dict(row).items():
                    index = self.keys.get(key)
                    if index is not None:
                        out[i, index] = float(v)
            features[_only_output(self.spec)] = output_value(
                _output_feature(self.spec, _only_output(self.spec)), out, n
            )
            return None
        assert self.session is not None
        feeds = {
            f.name: feed_value(f, inputs[f.name], n, self.widths.get(f.name))
            for f in description.input
            if f.name in self.session.input_names
        }
        results = self.session.run(feeds)
        if not self.is_classifier:
            for name, array in results.items():
                feature = name.removeprefix(_OUTPUT_PREFIX)
                features[feature] = output_value(_output_feature(self.spec, feature), array, n)
            return None
        probs = np.asarray(results[PROBABILITIES_OUTPUT], dtype=np.float64).reshape(n, -1)
        labels = [_python_label(v) for v in np.asarray(results[LABEL_OUTPUT]).reshape(n)]
        dicts = [{lab: float(p) for lab, p in zip(self.labels, row, strict=True)} for row in probs]
        if description.predictedFeatureName:
            features[description.predictedFeatureName] = labels
        if description.predictedProbabilitiesName:
            features[description.predictedProbabilitiesName] = dicts
        return Classified(labels, dicts)


def _output_feature(spec: Any, name: str) -> Any:
    for feature in spec.description.output:
        if feature.name == name:
            return feature
    raise InvalidModelError(f"the {spec.WhichOneof('Type')} model has no output {name!r}")
