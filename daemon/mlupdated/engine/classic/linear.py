"""Generalized linear models (``glmClassifier``, ``glmRegressor``), in double."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InvalidModelError, UnsupportedModelError
from .graph import (
    Graph,
    binary,
    class_labels,
    enum_name,
    input_width,
    label_of,
    numeric_input,
    only_output,
    probit,
    sigmoid,
)

# --- GLM ---------------------------------------------------------------------------------


def _glm_scores(g: Graph, x: str, glm: Any, d: int | None) -> tuple[str, int]:
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


def glm_regressor(g: Graph, spec: Any) -> dict[str, str]:
    glm = spec.glmRegressor
    x = numeric_input(g, spec)
    y, _ = _glm_scores(g, x, glm, input_width(spec))
    transform = enum_name(glm, "postEvaluationTransform")
    if transform == "Logit":
        y = sigmoid(g, y)
    elif transform == "Probit":
        y = probit(g, y)
    return {only_output(spec): y}


def glm_classifier(g: Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    glm = spec.glmClassifier
    labels = class_labels(glm, "GLM classifier")
    x = numeric_input(g, spec)
    z, rows = _glm_scores(g, x, glm, input_width(spec))
    transform = enum_name(glm, "postEvaluationTransform")
    f = probit(g, z) if transform == "Probit" else sigmoid(g, z)
    encoding = enum_name(glm, "classEncoding")
    if rows == 1 and len(labels) == 2:
        probs = binary(g, f)
    elif rows == len(labels) and encoding == "OneVsRest":
        probs = g.op("Div", [f, g.op("ReduceSum", [f, g.const(np.asarray([1], np.int64))])])
    else:
        raise UnsupportedModelError(
            f"GLM classifier with {rows} weight rows, {len(labels)} classes and {encoding} "
            "encoding is not supported (supported: binary, or one-vs-rest)"
        )
    return label_of(g, probs, labels), probs, labels
