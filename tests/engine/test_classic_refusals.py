"""Broken or unsupported classic models are refused when the predictor is built, in
one line naming the model type (and the pipeline stage), with our own error types."""

from __future__ import annotations

import numpy as np
import pytest
from mlupdated.coreml.proto import Model_pb2
from mlupdated.engine.predictor import Predictor
from mlupdated.errors import MlupdatedError, UnsupportedModelError


def _array(feature, name: str, size: int) -> None:
    feature.name = name
    feature.type.multiArrayType.shape.append(size)
    feature.type.multiArrayType.dataType = 65600  # DOUBLE


def _glm_classifier(rows: int, width: int, labels: list[str]) -> Model_pb2.Model:
    spec = Model_pb2.Model(specificationVersion=1)
    glm = spec.glmClassifier
    for _ in range(rows):
        glm.weights.add().value.extend([0.5] * width)
    glm.offset.extend([0.0] * rows)
    glm.stringClassLabels.vector.extend(labels)
    _array(spec.description.input.add(), "x", 3)
    out = spec.description.output.add()
    out.name = "label"
    out.type.stringType.SetInParent()
    spec.description.predictedFeatureName = "label"
    return spec


def _refused(spec: Model_pb2.Model, *needles: str) -> str:
    with pytest.raises(MlupdatedError) as caught:
        Predictor(spec)
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_glm_classifier_without_labels():
    _refused(_glm_classifier(1, 3, []), "no class labels")


def test_glm_weights_of_the_wrong_width():
    _refused(_glm_classifier(1, 4, ["a", "b"]), "glmClassifier", "4 values per row for 3")


def test_glm_reference_class_multiclass_is_unsupported():
    spec = _glm_classifier(2, 3, ["a", "b", "c"])
    with pytest.raises(UnsupportedModelError, match="2 weight rows, 3 classes"):
        Predictor(spec)


def test_tree_leaf_beyond_its_dimensions():
    spec = Model_pb2.Model(specificationVersion=1)
    tree = spec.treeEnsembleRegressor.treeEnsemble
    tree.numPredictionDimensions = 1
    leaf = tree.nodes.add(treeId=0, nodeId=0, nodeBehavior=6)
    leaf.evaluationInfo.add(evaluationIndex=3, evaluationValue=1.0)
    _array(spec.description.input.add(), "x", 2)
    out = spec.description.output.add()
    out.name = "y"
    out.type.doubleType.SetInParent()
    _refused(spec, "treeEnsembleRegressor", "dimension 3 of 1")


def test_svm_coefficients_that_do_not_match():
    spec = Model_pb2.Model(specificationVersion=1)
    svm = spec.supportVectorClassifier
    svm.kernel.rbfKernel.gamma = 0.1
    for _ in range(3):
        svm.denseSupportVectors.vectors.add().values.extend([0.0, 1.0])
    svm.numberOfSupportVectorsPerClass.extend([2, 1])
    svm.coefficients.add().alpha.extend([1.0, -1.0])  # 2 coefficients for 3 vectors
    svm.rho.append(0.0)
    svm.int64ClassLabels.vector.extend([0, 1])
    _array(spec.description.input.add(), "x", 2)
    _refused(spec, "supportVectorClassifier", "coefficients do not match")


def test_apple_only_stage_deep_in_a_pipeline():
    inner = Model_pb2.Model(specificationVersion=1)
    inner.pipeline.models.add().identity.SetInParent()
    inner.pipeline.models.add().wordEmbedding.SetInParent()
    outer = Model_pb2.Model(specificationVersion=1)
    outer.pipeline.models.add().CopyFrom(inner)
    with pytest.raises(UnsupportedModelError) as caught:
        Predictor(outer)
    assert str(caught.value) == (
        "pipeline stage 0: pipeline stage 1: model type 'wordEmbedding' can only be run by "
        "Apple's frameworks (Core ML on an Apple device); mlupdated cannot run it"
    )


def test_a_dictionary_with_a_bad_value_is_our_error():
    spec = Model_pb2.Model(specificationVersion=1)
    spec.dictVectorizer.stringToIndex.vector.extend(["a", "b"])
    feature = spec.description.input.add()
    feature.name = "d"
    feature.type.dictionaryType.stringKeyType.SetInParent()
    _array(spec.description.output.add(), "v", 2)
    predictor = Predictor(spec)
    (ok,) = predictor.predict_features({"d": [{"b": 2.0, "zzz": 5.0}]})
    assert np.array_equal(ok.outputs["v"], [0.0, 2.0])
    with pytest.raises(MlupdatedError, match="dictVectorizer model cannot take its inputs"):
        predictor.predict_features({"d": [{"a": "not a number"}]})


def test_inspect_summarizes_classic_models():
    from mlupdated.coreml.describe import describe, format_description

    spec = _glm_classifier(1, 3, ["a", "b"])
    text = format_description(describe(spec))
    assert "Holds: linear model: 1 weight row(s) of 3, Logit, ReferenceClass" in text
    assert "Call: mlupdated predict --model MODEL.mlmodel --input 'x=[0.0,0.0,0.0]'" in text
