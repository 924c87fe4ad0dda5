"""Core ML's classic model types against scikit-learn.

Each scikit-learn model is fitted, converted by coremltools' scikit-learn converter,
run by the engine (onnxruntime's ONNX-ML operators) and compared with scikit-learn's
own predictions: labels equal, probabilities within 1e-5, regression values within
1e-5 relative. Binary and multiclass, int64 and string labels, alone and in
pipelines.

The inputs are float32 values (held as doubles): scikit-learn's trees compare float32
copies of the features with their thresholds, so a double between a float32 value
and a threshold could go the other way than scikit-learn sends it.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pytest
from mlupdated.coreml import proto  # noqa: F401  (silences coremltools before importing it)
from mlupdated.engine.predictor import Predictor

sklearn = pytest.importorskip("sklearn")
from sklearn import datasets, ensemble, linear_model, pipeline, preprocessing, svm, tree  # noqa: E402
from sklearn.feature_extraction import DictVectorizer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402

logging.getLogger("coremltools").setLevel(logging.ERROR)

PROB_ATOL = 1e-5
VALUE_RTOL = 1e-5


def _float32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "iris":
        x, y = datasets.load_iris(return_X_y=True)
    elif name == "iris_scaled":
        # Standardized as SVMs want it (raw iris through a degree-2 kernel loses
        # float32 digits in onnxruntime's SVM: 1.01e-5 at worst).
        x, y = datasets.load_iris(return_X_y=True)
        x = preprocessing.StandardScaler().fit_transform(x)
    elif name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
        x = preprocessing.StandardScaler().fit_transform(x)
    elif name == "cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        x = preprocessing.StandardScaler().fit_transform(x)
    elif name == "blobs":
        x, y = datasets.make_classification(
            n_samples=200, n_features=6, n_informative=4, n_classes=4, random_state=3
        )
    else:
        raise KeyError(name)
    return _float32(x), y


def _labels(y: np.ndarray, kind: str) -> np.ndarray:
    if kind == "int":
        return y * 10 + 3  # int64 labels that are not class indices
    names = np.asarray(["alpha", "beta", "gamma", "delta", "epsilon"], dtype=object)
    return names[y].astype(str)


def _convert(model: Any, inputs: Any, target: str = "target") -> Any:
    import coremltools as ct

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.converters.sklearn.convert(model, inputs, target).get_spec()


def _array_input(x: np.ndarray) -> list:
    import coremltools as ct

    return [("input", ct.models.datatypes.Array(x.shape[1]))]


def _as_python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_classifier(model: Any, spec: Any, feeds: dict, x_ref: Any) -> float:
    predictions = Predictor(spec).predict_features(feeds)
    classes = [_as_python(c) for c in model.classes_]
    got_labels = [p.label for p in predictions]
    assert got_labels == [_as_python(v) for v in model.predict(x_ref)]
    assert all(type(lab) is type(classes[0]) for lab in got_labels)
    if not hasattr(model, "predict_proba"):
        return 0.0
    got = np.asarray([[p.probabilities[c] for c in classes] for p in predictions])
    diff = float(np.abs(got - model.predict_proba(x_ref)).max())
    assert diff <= PROB_ATOL, diff
    return diff


def _check_values(got: np.ndarray, expected: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64).reshape(expected.shape)
    rel = float((np.abs(got - expected) / np.maximum(1.0, np.abs(expected))).max())
    assert rel <= VALUE_RTOL, rel
    return rel


CLASSIFIERS = {
    "logistic": lambda: linear_model.LogisticRegression(multi_class="ovr", max_iter=5000),
    "decision_tree": lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestClassifier(n_estimators=7, random_state=0),
    "svc_rbf": lambda: svm.SVC(probability=True, random_state=0),
    "svc_poly": lambda: svm.SVC(kernel="poly", degree=2, probability=True, random_state=0),
    "svc_votes": lambda: svm.SVC(kernel="linear"),
    "nu_svc": lambda: svm.NuSVC(nu=0.3, probability=True, random_state=0),
    "linear_svc": lambda: svm.LinearSVC(max_iter=20000),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize("dataset", ["iris_scaled", "blobs"])
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_multiclass_classifiers(name: str, dataset: str, labels: str) -> None:
    x, y = _data(dataset)
    y = _labels(y, labels)
    model = CLASSIFIERS[name]().fit(x, y)
    spec = _convert(model, _array_input(x))
    _check_classifier(model, spec, {"input": x}, x)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize(
    "name",
    ["logistic", "decision_tree", "random_forest", "gradient_boosting", "svc_rbf", "svc_votes"],
)
def test_binary_classifiers(name: str, labels: str) -> None:
    x, y = _data("cancer")
    y = _labels(y, labels)
    if name == "gradient_boosting":
        model = ensemble.GradientBoostingClassifier(n_estimators=15, random_state=0)
    else:
        model = CLASSIFIERS[name]()
    model.fit(x, y)
    spec = _convert(model, _array_input(x))
    _check_classifier(model, spec, {"input": x}, x)


REGRESSORS = {
    "linear": linear_model.LinearRegression,
    "ridge": lambda: linear_model.Ridge(alpha=0.5),
    "decision_tree": lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0),
    "random_forest": lambda: ensemble.RandomForestRegressor(n_estimators=5, random_state=0),
    "svr_rbf": lambda: svm.SVR(C=10.0),
    "svr_linear": lambda: svm.SVR(kernel="linear"),
    "svr_poly": lambda: svm.SVR(kernel="poly", degree=2),
    "svr_sigmoid": lambda: svm.SVR(kernel="sigmoid", gamma=0.05),
    "nu_svr": lambda: svm.NuSVR(),
    "linear_svr": lambda: svm.LinearSVR(max_iter=20000),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dataset", ["diabetes", "friedman"])
@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressors(name: str, dataset: str) -> None:
    if dataset == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
    else:
        x, y = datasets.make_friedman1(n_samples=150, n_features=7, random_state=1)
    x = _float32(x)
    model = REGRESSORS[name]().fit(x, y)
    spec = _convert(model, _array_input(x))
    (prediction,) = Predictor(spec).predict_features({"input": x[:1]})
    assert isinstance(prediction.outputs["target"], float | np.floating)
    got = [p.outputs["target"] for p in Predictor(spec).predict_features({"input": x})]
    _check_values(np.asarray(got), model.predict(x))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "transformer",
    [
        lambda: preprocessing.Normalizer(norm="l2"),
        lambda: preprocessing.Normalizer(norm="l1"),
        lambda: preprocessing.Normalizer(norm="max"),
        preprocessing.StandardScaler,
    ],
    ids=["l2", "l1", "max", "standard_scaler"],
)
def test_transformers(transformer: Any) -> None:
    x, _ = datasets.load_diabetes(return_X_y=True)
    x = _float32(np.vstack([x, np.zeros((1, x.shape[1]))]))  # a row of zeros too
    model = transformer().fit(x)
    spec = _convert(model, _array_input(x))
    (out,) = [o.name for o in spec.description.output]
    predictions = Predictor(spec).predict_features({"input": x})
    got = np.stack([p.outputs[out] for p in predictions])
    _check_values(got, model.transform(x))


@pytest.mark.filterwarnings("ignore")
def test_imputer_then_scaler_then_forest_pipeline() -> None:
    x, y = _data("iris")
    x = x.copy()
    x[::7, 1] = np.nan
    x[3::11, 3] = np.nan
    model = pipeline.Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean")),
            ("scale", preprocessing.StandardScaler()),
            ("forest", ensemble.RandomForestClassifier(n_estimators=5, random_state=1)),
        ]
    ).fit(x, _labels(y, "str"))
    spec = _convert(model, _array_input(x))
    assert spec.WhichOneof("Type") == "pipelineClassifier"
    _check_classifier(model, spec, {"input": x}, x)


@pytest.mark.filterwarnings("ignore")
def test_scaler_then_logistic_pipeline_with_named_double_inputs() -> None:
    x, y = _data("iris")
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = pipeline.Pipeline(
        [
            ("scale", preprocessing.StandardScaler()),
            ("logistic", linear_model.LogisticRegression(multi_class="ovr", max_iter=5000)),
        ]
    ).fit(x, _labels(y, "int"))
    spec = _convert(model, names)
    kinds = [m.WhichOneof("Type") for m in spec.pipelineClassifier.pipeline.models]
    assert kinds[0] == "featureVectorizer"
    assert [f.type.WhichOneof("Type") for f in spec.description.input] == ["doubleType"] * 4
    feeds = {name: x[:, i] for i, name in enumerate(names)}
    _check_classifier(model, spec, feeds, x)


@pytest.mark.filterwarnings("ignore")
def test_one_hot_encoder() -> None:
    # coremltools writes the categories of each column as 0..k-1 (the integer
    # categories scikit-learn's old encoder took), so the data uses those.
    rng = np.random.default_rng(4)
    x = rng.integers(0, 5, size=(40, 3)).astype(np.float64)
    x[:, 1] = x[:, 1] % 3
    model = preprocessing.OneHotEncoder(handle_unknown="ignore").fit(x)
    spec = _convert(model, _array_input(x))
    kinds = [m.WhichOneof("Type") for m in spec.pipeline.models]
    assert "oneHotEncoder" in kinds and "arrayFeatureExtractor" in kinds
    test = np.vstack([x, [[9.0, 7.0, 2.0]]])  # 9 was never seen: all zeros for it
    (out,) = [o.name for o in spec.description.output]
    got = np.stack(
        [
            np.asarray(p.outputs[out]).reshape(-1)
            for p in Predictor(spec).predict_features({"input": test})
        ]
    )
    _check_values(got, model.transform(test).toarray())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("labels", ["int", "str"])
def test_dict_vectorizer_then_logistic(labels: str) -> None:
    rng = np.random.default_rng(5)
    keys = ["red", "green", "blue", "weight", "size"]
    rows = [{k: float(rng.normal()) for k in keys if rng.random() < 0.8} for _ in range(80)]
    y = np.asarray([int(r.get("red", 0) + r.get("size", 0) > 0) for r in rows])
    model = pipeline.Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=False)),
            ("logistic", linear_model.LogisticRegression(multi_class="ovr")),
        ]
    ).fit(rows, _labels(y, labels))
    spec = _convert(model, "features")
    assert spec.description.input[0].type.WhichOneof("Type") == "dictionaryType"
    _check_classifier(model, spec, {"features": rows}, rows)


def test_categorical_mapping_both_ways() -> None:
    from mlupdated.coreml.proto import Model_pb2

    mapping = {"cat": 3, "dog": 7, "bird": -2}
    spec = Model_pb2.Model(specificationVersion=1)
    spec.categoricalMapping.stringToInt64Map.map.update(mapping)
    spec.categoricalMapping.int64Value = -1
    _feature(spec.description.input.add(), "animal", "stringType")
    _feature(spec.description.output.add(), "code", "int64Type")
    words = np.asarray(["dog", "cat", "fish", "bird"], dtype=object)
    (p,) = [Predictor(spec).predict_features({"animal": words})]
    got = [q.outputs["code"] for q in p]
    assert got == [mapping.get(w, -1) for w in words]

    back = Model_pb2.Model(specificationVersion=1)
    back.categoricalMapping.int64ToStringMap.map.update({v: k for k, v in mapping.items()})
    back.categoricalMapping.strValue = "unknown"
    _feature(back.description.input.add(), "code", "int64Type")
    _feature(back.description.output.add(), "animal", "stringType")
    codes = np.asarray([7, 3, 5], dtype=np.int64)
    got = [q.outputs["animal"] for q in Predictor(back).predict_features({"code": codes})]
    reverse = {v: k for k, v in mapping.items()}
    assert got == [reverse.get(int(c), "unknown") for c in codes]


def _feature(feature: Any, name: str, kind: str, shape: tuple[int, ...] = ()) -> None:
    feature.name = name
    getattr(feature.type, kind).SetInParent()
    if kind == "multiArrayType":
        feature.type.multiArrayType.shape.extend(shape)
        feature.type.multiArrayType.dataType = 65600  # DOUBLE


def test_array_feature_extractor_and_identity_pipeline() -> None:
    from mlupdated.coreml.proto import Model_pb2

    extract = Model_pb2.Model(specificationVersion=1)
    extract.arrayFeatureExtractor.extractIndex.extend([4, 0, 2])
    _feature(extract.description.input.add(), "x", "multiArrayType", (6,))
    _feature(extract.description.output.add(), "picked", "multiArrayType", (3,))
    ident = Model_pb2.Model(specificationVersion=1)
    ident.identity.SetInParent()
    _feature(ident.description.input.add(), "picked", "multiArrayType", (3,))
    _feature(ident.description.output.add(), "same", "multiArrayType", (3,))
    pipe = Model_pb2.Model(specificationVersion=1)
    pipe.pipeline.models.add().CopyFrom(extract)
    pipe.pipeline.models.add().CopyFrom(ident)
    _feature(pipe.description.input.add(), "x", "multiArrayType", (6,))
    _feature(pipe.description.output.add(), "same", "multiArrayType", (3,))
    x = np.random.default_rng(6).normal(size=(5, 6))
    got = np.stack([p.outputs["same"] for p in Predictor(pipe).predict_features({"x": x})])
    assert np.array_equal(got, x[:, [4, 0, 2]])


@pytest.mark.filterwarnings("ignore")
def test_scaler_feeding_a_neural_network() -> None:
    """A classic stage and a neural network in one pipeline (against NumPy)."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    x, _ = _data("wine")
    scaler = preprocessing.StandardScaler().fit(x * 3 + 1)
    scale_spec = _convert(scaler, _array_input(x), "scaled")
    rng = np.random.default_rng(7)
    w = rng.normal(size=(3, x.shape[1])).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    builder = NeuralNetworkBuilder(
        [("scaled", datatypes.Array(x.shape[1]))], [("scores", datatypes.Array(3))]
    )
    builder.add_inner_product("dense", w, b, x.shape[1], 3, True, "scaled", "dense_out")
    builder.add_activation("relu", "RELU", "dense_out", "scores")
    pipe = ct.models.pipeline.Pipeline(_array_input(x), [("scores", datatypes.Array(3))])
    pipe.add_model(scale_spec)
    pipe.add_model(builder.spec)
    spec = pipe.spec
    got = np.stack(
        [p.outputs["scores"].reshape(-1) for p in Predictor(spec).predict_features({"input": x})]
    )
    expected = np.maximum(scaler.transform(x) @ w.T.astype(np.float64) + b, 0)
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.filterwarnings("ignore")
def test_neural_network_feeding_a_logistic_regression() -> None:
    """The shape of a Create ML classifier: a network's features, then a GLM
    classifier (scikit-learn's, fitted on the network's features computed in NumPy)."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    x, y = _data("wine")
    rng = np.random.default_rng(12)
    w = rng.normal(size=(5, x.shape[1])).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    builder = NeuralNetworkBuilder(
        [("input", datatypes.Array(x.shape[1]))], [("features", datatypes.Array(5))]
    )
    builder.add_inner_product("dense", w, b, x.shape[1], 5, True, "input", "dense_out")
    builder.add_activation("relu", "RELU", "dense_out", "features")
    features = np.maximum(x @ w.T.astype(np.float64) + b, 0)
    logistic = linear_model.LogisticRegression(multi_class="ovr", max_iter=5000)
    logistic.fit(features, _labels(y, "str"))
    glm = _convert(logistic, [("features", ct.models.datatypes.Array(5))], "label")
    pipe = ct.models.pipeline.PipelineClassifier(
        _array_input(x), [str(c) for c in logistic.classes_], "label"
    )
    pipe.add_model(builder.spec)
    pipe.add_model(glm)
    predictions = Predictor(pipe.spec).predict_features({"input": x})
    assert [p.label for p in predictions] == list(logistic.predict(features))
    got = np.asarray([[p.probabilities[c] for c in logistic.classes_] for p in predictions])
    # The network runs in float32: its features carry float32 rounding.
    assert np.abs(got - logistic.predict_proba(features)).max() <= 1e-4


@pytest.fixture
def numpy2_tree_builder(monkeypatch):
    """coremltools' tree builder calls ``float()`` on one-element arrays, which NumPy 2
    refuses (gradient boosting's values and base prediction): give it plain floats."""
    from coremltools.models import tree_ensemble

    def plain(values: Any) -> Any:
        if isinstance(values, dict):
            return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in values.items()}
        if isinstance(values, np.ndarray | list | tuple):
            return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
        return values

    base = tree_ensemble.TreeEnsembleBase
    add_leaf, set_default = base.add_leaf_node, base.set_default_prediction_value
    monkeypatch.setattr(
        base,
        "add_leaf_node",
        lambda self, tree_id, node_id, values, relative_hit_rate=None: add_leaf(
            self, tree_id, node_id, plain(values), relative_hit_rate
        ),
    )
    monkeypatch.setattr(
        base, "set_default_prediction_value", lambda self, v: set_default(self, plain(v))
    )


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize("dataset", ["iris_scaled", "blobs"])
def test_gradient_boosting_multiclass(numpy2_tree_builder, dataset: str, labels: str) -> None:
    x, y = _data(dataset)
    y = _labels(y, labels)
    model = ensemble.GradientBoostingClassifier(n_estimators=12, random_state=0).fit(x, y)
    spec = _convert(model, _array_input(x))
    assert spec.treeEnsembleClassifier.postEvaluationTransform == 1  # Classification_SoftMax
    _check_classifier(model, spec, {"input": x}, x)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dataset", ["diabetes", "friedman"])
def test_gradient_boosting_regressor(numpy2_tree_builder, dataset: str) -> None:
    if dataset == "diabetes":
        x, y = datasets.load_diabetes(return_X_y=True)
    else:
        x, y = datasets.make_friedman1(n_samples=150, n_features=7, random_state=1)
    x = _float32(x)
    model = ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, y)
    spec = _convert(model, _array_input(x))
    got = [p.outputs["target"] for p in Predictor(spec).predict_features({"input": x})]
    _check_values(np.asarray(got), model.predict(x))
