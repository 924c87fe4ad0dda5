"""Compile one classic model to its graph and run it: :class:`ClassicStage`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...coreml.spec import CLASSIFIER_KINDS
from ...errors import InvalidModelError, MlupdatedError, UnsupportedModelError
from ..runtime import Session
from .graph import (
    BATCH_DIM,
    IR_VERSION,
    ML_DOMAIN,
    ML_OPSET,
    OPSET,
    Graph,
    feature_width,
    only_output,
)
from .imputer import NumpyImputer, runs_in_numpy
from .linear import glm_classifier, glm_regressor
from .svm import svm_classifier, svm_regressor
from .transformers import (
    array_feature_extractor,
    categorical_mapping,
    feature_vectorizer,
    imputer,
    normalizer,
    one_hot,
    scaler,
)
from .trees import tree_classifier, tree_regressor


@dataclass
class Classified:
    """A classifier stage's result for a batch (labels and per-example probabilities)."""

    labels: list[Any]
    probabilities: list[dict[Any, float]]


_BUILDERS = {
    "glmRegressor": glm_regressor,
    "treeEnsembleRegressor": tree_regressor,
    "supportVectorRegressor": svm_regressor,
    "normalizer": normalizer,
    "oneHotEncoder": one_hot,
    "imputer": imputer,
    "scaler": scaler,
    "featureVectorizer": feature_vectorizer,
    "arrayFeatureExtractor": array_feature_extractor,
    "categoricalMapping": categorical_mapping,
}
_CLASSIFIER_BUILDERS = {
    "glmClassifier": glm_classifier,
    "treeEnsembleClassifier": tree_classifier,
    "supportVectorClassifier": svm_classifier,
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
    g = Graph(kind)
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


def _model(g: Graph, kind: str, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
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
    d = feature_width(feature)
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
        self.imputer: NumpyImputer | None = None
        if self.kind == "dictVectorizer":
            self._check_dict_vectorizer()
        elif self.kind == "imputer" and runs_in_numpy(spec):
            self.imputer = NumpyImputer(spec)
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
            features[only_output(self.spec)] = output_value(
                _output_feature(self.spec, only_output(self.spec)), out, n
            )
            return None
        if self.imputer is not None:
            features[self.imputer.output] = self.imputer.run(inputs[self.imputer.input])
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
