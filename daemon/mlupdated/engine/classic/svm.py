"""Support vector machines (``supportVectorClassifier``, ``supportVectorRegressor``)
through onnxruntime's ``SVMClassifier``/``SVMRegressor`` (libsvm's rules).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper

from ...errors import InvalidModelError
from .graph import ML_DOMAIN, Graph, class_labels, input_width, numeric_input, only_output, type_of

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


def svm_regressor(g: Graph, spec: Any) -> dict[str, str]:
    svm = spec.supportVectorRegressor
    x = numeric_input(g, spec)
    vectors = _support_vectors(svm, input_width(spec), "support vector regressor")
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
    return {only_output(spec): g.op("Cast", [y], to=TensorProto.DOUBLE)}


def svm_classifier(g: Graph, spec: Any) -> tuple[str, str, np.ndarray]:
    svm = spec.supportVectorClassifier
    labels = class_labels(svm, "support vector classifier")
    x = numeric_input(g, spec)
    vectors = _support_vectors(svm, input_width(spec), "support vector classifier")
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
        "Gather", [g.const(labels, hint="labels"), label_index], axis=0, out_type=type_of(labels)
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
