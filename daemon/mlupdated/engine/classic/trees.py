"""Tree ensembles (``treeEnsembleClassifier``, ``treeEnsembleRegressor``) through
onnxruntime's ``TreeEnsembleRegressor`` with double thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from ...errors import InvalidModelError, UnsupportedModelError
from .graph import (
    Graph,
    binary,
    class_labels,
    enum_name,
    label_of,
    numeric_input,
    only_output,
    sigmoid,
)

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


def _tree_scores(g: Graph, x: str, params: Any) -> tuple[str, int]:
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
        mode = _TREE_MODES.get(enum_name(node, "nodeBehavior"))
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


def tree_regressor(g: Graph, spec: Any) -> dict[str, str]:
    tree = spec.treeEnsembleRegressor
    y, _ = _tree_scores(g, numeric_input(g, spec), tree.treeEnsemble)
    transform = enum_name(tree, "postEvaluationTransform")
    if transform == "Regression_Logistic":
        y = sigmoid(g, y)
    elif transform != "NoTransform":
        raise UnsupportedModelError(f"tree ensemble regressor with {transform} is not supported")
    return {only_output(spec): y}


def tree_classifier(g: Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    tree = spec.treeEnsembleClassifier
    labels = class_labels(tree, "tree ensemble classifier")
    s, k = _tree_scores(g, numeric_input(g, spec), tree.treeEnsemble)
    transform = enum_name(tree, "postEvaluationTransform")
    c = len(labels)
    if transform == "Regression_Logistic":
        s = sigmoid(g, s)
    if k == 1 and c == 2 and transform in ("NoTransform", "Regression_Logistic"):
        probs = binary(g, s)
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
    return label_of(g, probs, labels), probs, labels
