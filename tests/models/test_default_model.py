"""The bundled default model: valid, updatable as documented, and run by our engine
exactly as its spec says. (Its accuracy on real photos: test_real_photos.py.)"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml.spec import load_spec
from mlupdated.coreml.validate import validate_updatable
from mlupdated.engine.compile import compile_network
from mlupdated.engine.predictor import Predictor
from mlupdated.engine.runtime import Session

from . import reference
from .photos import CAT_PHOTOS, NON_PET_PHOTOS, eval_photos, file_model_sized, model_sized

# All float32 (Core ML cannot update a network holding float16 weights): the backbone
# is about 13.4 MB, the head (whiten 1280x64, dense_5 16386x64) about 4.7 MB.
MAX_FILE_BYTES = 19_000_000
UPDATABLE = ("dense_5", "dense_6")
LABELS = ["Cat", "Dog"]
PROBABILITY_ATOL = 1e-4
# Intermediate blobs: features reach ~6 and logits ~15, summed over 1280 float32 terms.
BLOB_RTOL = 1e-4
BLOB_ATOL = 1e-3


@pytest.fixture(scope="module")
def model_path() -> Any:
    path = cli.bundled_model_path()
    assert path.is_file(), f"bundled model missing: {path}"
    return path


@pytest.fixture(scope="module")
def spec(model_path: Any) -> Any:
    return load_spec(model_path)


@pytest.fixture(scope="module")
def predictor(model_path: Any) -> Predictor:
    return Predictor.from_path(model_path)


def _layers(spec: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}


def _weight_params(layer: Any) -> list[Any]:
    kind = layer.WhichOneof("layer")
    params = getattr(layer, kind)
    if kind == "convolution":
        return [params.weights] + ([params.bias] if params.hasBias else [])
    if kind == "innerProduct":
        return [params.weights] + ([params.bias] if params.hasBias else [])
    return []


# --- validity ----------------------------------------------------------------------------


def test_passes_our_validator(spec: Any) -> None:
    assert validate_updatable(spec) == []


def test_loads_with_coremltools(spec: Any) -> None:
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

        model = ct.models.MLModel(spec)
    assert model.get_spec().description.predictedFeatureName == "classLabel"


def test_file_is_small(model_path: Any) -> None:
    assert model_path.stat().st_size <= MAX_FILE_BYTES


# --- interface and update settings ---------------------------------------------------------


def test_interface_is_the_classic_cat_dog_one(spec: Any) -> None:
    (image,) = spec.description.input
    assert image.name == "image"
    assert image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (224, 224)
    assert image.type.imageType.colorSpace == image.type.imageType.RGB
    assert [o.name for o in spec.description.output] == ["output", "classLabel"]
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.predictedProbabilitiesName == "output"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == LABELS


def test_scaler_is_efficientnet_lite_normalisation(spec: Any) -> None:
    # EfficientNet-Lite expects (x - 127) / 128 on every channel.
    (pre,) = spec.neuralNetworkClassifier.preprocessing
    assert pre.featureName == "image"
    scaler = pre.scaler
    x = np.array([0.0, 127.0, 255.0])
    got = x * scaler.channelScale + np.array([scaler.redBias] * 3)
    np.testing.assert_allclose(got, (x - 127.0) / 128.0, atol=1e-7)
    assert scaler.redBias == scaler.greenBias == scaler.blueBias


def test_head_layers_in_order(spec: Any) -> None:
    layers = spec.neuralNetworkClassifier.layers
    tail = [(layer.name, layer.WhichOneof("layer")) for layer in layers[-7:]]
    assert tail[1:] == [
        ("whiten", "innerProduct"),
        ("normalize", "l2normalize"),
        ("dense_5", "innerProduct"),
        ("dense_5_relu", "activation"),
        ("dense_6", "innerProduct"),
        ("output_softmax", "softmax"),
    ]
    assert tail[0][1] == "pooling" and layers[-7].output[0] == "features"
    assert layers[-3].activation.WhichOneof("NonlinearityType") == "ReLU"
    assert layers[-1].output[0] == "output"
    assert spec.neuralNetworkClassifier.labelProbabilityLayerName == "output"


def test_only_the_head_is_updatable_and_float32(spec: Any) -> None:
    assert spec.isUpdatable and spec.specificationVersion >= 4
    updatable = [layer.name for layer in spec.neuralNetworkClassifier.layers if layer.isUpdatable]
    assert updatable == list(UPDATABLE)
    for name, layer in _layers(spec).items():
        for params in _weight_params(layer):
            if name in UPDATABLE:
                assert params.isUpdatable
                assert len(params.floatValue) > 0 and not params.float16Value
            else:
                # float32 too: Core ML cannot update a network holding float16 weights.
                assert not params.isUpdatable
                assert len(params.floatValue) > 0 and not params.float16Value


def test_loss_and_optimizer_defaults_lie_in_their_ranges(spec: Any) -> None:
    update = spec.neuralNetworkClassifier.updateParams
    (loss,) = update.lossLayers
    assert loss.categoricalCrossEntropyLossLayer.input == "output"
    assert [t.name for t in spec.description.trainingInput] == ["image", "classLabel"]
    sgd = update.optimizer.sgdOptimizer
    lr = sgd.learningRate
    assert lr.range.minValue <= lr.defaultValue <= lr.range.maxValue
    assert sgd.miniBatchSize.defaultValue in sgd.miniBatchSize.set.values
    assert update.epochs.defaultValue in update.epochs.set.values
    assert update.shuffle.defaultValue is True


def test_metadata_names_author_licence_and_version(spec: Any) -> None:
    meta = spec.description.metadata
    assert meta.author == "mlupdated"
    assert "Apache-2.0" in meta.license
    assert meta.versionString
    assert meta.shortDescription
    # A conversion date would make every rebuild differ.
    assert not any(key.endswith("conversion_date") for key in meta.userDefined)


# --- inference -----------------------------------------------------------------------------


def _images() -> np.ndarray:
    """The sample photos, two cat and two dog photos from <pets>/eval, and noise."""
    names = CAT_PHOTOS + NON_PET_PHOTOS
    files = eval_photos("Cat")[:2] + eval_photos("Dog")[:2]
    noise = np.random.default_rng(0).uniform(0, 255, size=(1, 3, 224, 224))
    photos = [model_sized(n) for n in names] + [file_model_sized(p) for p in files]
    return np.concatenate([np.stack(photos), noise]).astype(np.float32)


def test_engine_matches_pytorch_reading_of_the_spec(spec: Any, predictor: Predictor) -> None:
    images = _images()
    expected = reference.probabilities(spec, images)
    got = predictor.predict_tensors({"image": images})
    actual = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)
    decided = np.abs(expected[:, 0] - 0.5) > 0.01
    labels = [p.label for p in got]
    assert [labels[i] for i in np.flatnonzero(decided)] == [
        LABELS[i] for i in expected[decided].argmax(axis=1)
    ]


def test_engine_blobs_match_pytorch_reading_of_the_spec(spec: Any) -> None:
    # Probabilities saturate, so the features, the normalised projection and the
    # head's pre-activations are compared too.
    blobs = ["features", "normalized", "dense_5_output", "dense_6_output"]
    images = _images()
    expected = reference.forward(spec, images)
    got = Session(compile_network(spec, outputs=blobs)).run({"image": images})
    for blob in blobs:
        actual = np.asarray(got[blob]).reshape(len(images), -1)
        want = expected[blob].reshape(len(images), -1)
        np.testing.assert_allclose(actual, want, rtol=BLOB_RTOL, atol=BLOB_ATOL, err_msg=blob)


def test_head_is_confident_on_the_cat_photo(spec: Any) -> None:
    images = np.stack([model_sized(n) for n in CAT_PHOTOS])
    assert (reference.probabilities(spec, images)[:, 0] > 0.8).all()


# --- the command line with no --model -------------------------------------------------------


def test_inspect_without_model_shows_the_updatable_head(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["inspect", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["updatable_layers"] == list(UPDATABLE)
    assert info["class_labels"] == LABELS
    assert info["problems"] == []
    assert cli.main(["inspect"]) == 0
    text = capsys.readouterr().out
    assert "dense_5" in text and "dense_6" in text
