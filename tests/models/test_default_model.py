"""The bundled default model: valid, updatable as documented (only ``classify``), with
its rehearsal set and familiarity threshold named, and run by our engine exactly as
its spec says. (Its accuracy on real photos: test_real_photos.py.)"""

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
from mlupdated.train.rehearsal import MAX_CORRECTION_WEIGHT

from . import reference
from .photos import CAT_PHOTOS, NON_PET_PHOTOS, eval_photos, file_model_sized, model_sized

# All float32 (Core ML cannot update a network holding float16 weights): the backbone
# is about 13.4 MB, the head (centre 1280, classify 2x1280, familiar 185x1280) about
# 1 MB; the file is about 14.4 MB.
MAX_FILE_BYTES = 20_000_000
UPDATABLE = ("classify",)
LABELS = ["Cat", "Dog"]
FIT_PHOTOS = 185
PROBABILITY_ATOL = 1e-4
# Intermediate blobs: features reach ~6 and logits ~15, summed over 1280 float32 terms.
BLOB_RTOL = 1e-4
BLOB_ATOL = 1e-3
# A cosine between unit vectors: float32 sums over 1280 terms.
FAMILIARITY_ATOL = 1e-4
REHEARSAL_KEY = "mlupdated.rehearsal"
THRESHOLD_KEY = "mlupdated.familiarity_threshold"


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
    if kind == "bias":
        return [params.bias]
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
    outputs = {o.name: o.type for o in spec.description.output}
    assert sorted(outputs) == ["classLabel", "familiarity", "output"]
    assert outputs["classLabel"].WhichOneof("Type") == "stringType"
    assert outputs["output"].WhichOneof("Type") == "dictionaryType"
    # One number: the cosine to the nearest fit photo.
    assert outputs["familiarity"].WhichOneof("Type") == "multiArrayType"
    assert list(outputs["familiarity"].multiArrayType.shape) == [1]
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
    tail = [
        (layer.name, layer.WhichOneof("layer"), list(layer.input), list(layer.output))
        for layer in layers[-6:]
    ]
    assert tail == [
        ("centre", "bias", ["features"], ["centred"]),
        ("normalize", "l2normalize", ["centred"], ["normalized"]),
        ("classify", "innerProduct", ["normalized"], ["classify_output"]),
        ("output_softmax", "softmax", ["classify_output"], ["output"]),
        ("familiar", "innerProduct", ["normalized"], ["familiar_output"]),
        ("familiarity_max", "reduce", ["familiar_output"], ["familiarity"]),
    ]
    pooling = layers[-7]
    assert pooling.WhichOneof("layer") == "pooling" and list(pooling.output) == ["features"]
    assert pooling.pooling.globalPooling and pooling.pooling.type == pooling.pooling.AVERAGE
    assert not any("features" in layer.input for layer in layers[:-7])
    assert spec.neuralNetworkClassifier.labelProbabilityLayerName == "output"


def test_head_layer_shapes(spec: Any) -> None:
    layers = _layers(spec)
    assert list(layers["centre"].bias.shape) == [1280]
    classify = layers["classify"].innerProduct
    assert (classify.inputChannels, classify.outputChannels, classify.hasBias) == (1280, 2, True)
    familiar = layers["familiar"].innerProduct
    assert (familiar.inputChannels, familiar.outputChannels) == (1280, FIT_PHOTOS)
    assert not familiar.hasBias
    reduce = layers["familiarity_max"].reduce
    assert (reduce.mode, reduce.axis) == (reduce.MAX, reduce.C)


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
    momentum = sgd.momentum
    assert momentum.range.minValue <= momentum.defaultValue <= momentum.range.maxValue
    # The values themselves are the build script's (test_build.py checks them).
    assert lr.defaultValue > 0 and sgd.miniBatchSize.defaultValue >= 1


def test_metadata_names_author_licence_and_version(spec: Any) -> None:
    meta = spec.description.metadata
    assert meta.author == "mlupdated"
    assert "Apache-2.0" in meta.license
    assert meta.versionString
    assert meta.shortDescription
    # A conversion date would make every rebuild differ.
    assert not any(key.endswith("conversion_date") for key in meta.userDefined)


def test_metadata_names_the_rehearsal_set_and_the_familiarity_threshold(spec: Any) -> None:
    meta = spec.description.metadata.userDefined
    rehearsal = json.loads(meta[REHEARSAL_KEY])
    assert set(rehearsal) == {"layer", "labels", "correction_weight"}
    assert rehearsal["layer"] == "familiar"
    familiar = _layers(spec)["familiar"]
    assert not familiar.isUpdatable
    # One label per familiar row (a fit photo), cats first as the fit folders sort.
    labels = rehearsal["labels"]
    assert len(labels) == familiar.innerProduct.outputChannels == FIT_PHOTOS
    assert set(labels) == set(LABELS)
    assert labels == sorted(labels, key=LABELS.index)
    # Repeated that many times, each correction weighs against the set; the value is
    # the build script's (test_build.py checks it).
    weight = rehearsal["correction_weight"]
    assert isinstance(weight, int) and 1 < weight <= MAX_CORRECTION_WEIGHT
    assert 0 < float(meta[THRESHOLD_KEY]) < 1


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


def test_engine_familiarity_matches_pytorch_reading_of_the_spec(spec: Any) -> None:
    images = _images()
    expected = reference.forward(spec, images)["familiarity"].reshape(len(images))
    got = Session(compile_network(spec, outputs=["familiarity"])).run({"image": images})
    actual = np.asarray(got["familiarity"]).reshape(len(images))
    np.testing.assert_allclose(actual, expected, atol=FAMILIARITY_ATOL, rtol=0)
    # A cosine between unit vectors.
    assert np.all(np.abs(expected) <= 1 + 1e-5)


def test_familiarity_flags_the_pictures_of_neither(spec: Any) -> None:
    # The cat and the pet photos score at or above the threshold; the astronaut, the
    # coffee, the rocket and the noise below it.
    images = _images()
    threshold = float(spec.description.metadata.userDefined[THRESHOLD_KEY])
    got = Session(compile_network(spec, outputs=["familiarity"])).run({"image": images})
    familiar = np.asarray(got["familiarity"]).reshape(len(images)) >= threshold
    pets = len(CAT_PHOTOS) * [True] + len(NON_PET_PHOTOS) * [False] + 4 * [True] + [False]
    assert familiar.tolist() == pets


def test_engine_blobs_match_pytorch_reading_of_the_spec(spec: Any) -> None:
    # Probabilities saturate, so the features, the centred and normalised point and
    # the head's logits are compared too, and the familiarity branch's output.
    blobs = ["features", "normalized", "classify_output", "familiar_output", "familiarity"]
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
    assert "classify" in text
