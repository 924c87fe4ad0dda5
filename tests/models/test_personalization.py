"""Personalizing the bundled model with ``mlupdated update`` and its default settings.

The mechanism on one photo (scikit-image's cat): relabelled ``Dog``, one default update
makes the model call it ``Dog``; the update is the SGD PyTorch computes on the same
head inputs; nothing but the head changes. (Ten corrections against 185 unseen photos:
test_real_photos.py.)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from mlupdated import cli
from mlupdated.coreml.images import load_tensor
from mlupdated.coreml.spec import load_spec
from mlupdated.coreml.validate import validate_updatable

from . import reference
from .photos import CAT_PHOTOS, save_photo

UPDATABLE = ("dense_5", "dense_6")
LABELS = ["Cat", "Dog"]
WEIGHT_ATOL = 1e-5
PROBABILITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def relabelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The cat photo filed under ``Dog`` and one default update on it."""
    root = tmp_path_factory.mktemp("personalize")
    dog_dir = root / "data" / "Dog"
    dog_dir.mkdir(parents=True)
    photos = [save_photo(name, dog_dir) for name in CAT_PHOTOS]
    out = root / "updated.mlmodel"
    model = str(cli.bundled_model_path())
    args = ["update", "--model", model, "--data", str(root / "data"), "--out", str(out)]
    assert cli.main([*args, "--seed", "0"]) == 0
    return {"photos": photos, "out": out}


def _layers(spec: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}


def _head(spec: Any) -> dict[str, torch.Tensor]:
    layers = _layers(spec)
    head = {}
    for name in UPDATABLE:
        ip = layers[name].innerProduct
        weights = reference.decode(ip.weights).reshape(ip.outputChannels, ip.inputChannels)
        head[f"{name}.weight"] = torch.tensor(weights, requires_grad=True)
        head[f"{name}.bias"] = torch.tensor(reference.decode(ip.bias), requires_grad=True)
    return head


def _sgd_in_torch(spec: Any, features: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """The default update (SGD, mean cross-entropy per mini-batch) done by PyTorch.

    With fewer examples than one mini-batch, shuffling cannot change anything.
    """
    update = spec.neuralNetworkClassifier.updateParams
    sgd = update.optimizer.sgdOptimizer
    assert len(features) <= sgd.miniBatchSize.defaultValue
    head = _head(spec)
    optimizer = torch.optim.SGD(
        list(head.values()), lr=sgd.learningRate.defaultValue, momentum=sgd.momentum.defaultValue
    )
    for _ in range(update.epochs.defaultValue):
        optimizer.zero_grad()
        hidden = torch.relu(features @ head["dense_5.weight"].T + head["dense_5.bias"])
        logits = hidden @ head["dense_6.weight"].T + head["dense_6.bias"]
        torch.nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step()
    return {k: v.detach().numpy() for k, v in head.items()}


def _head_probabilities(features: torch.Tensor, head: dict[str, np.ndarray]) -> np.ndarray:
    w = {k: torch.from_numpy(v) for k, v in head.items()}
    hidden = torch.relu(features @ w["dense_5.weight"].T + w["dense_5.bias"])
    return torch.softmax(hidden @ w["dense_6.weight"].T + w["dense_6.bias"], dim=1).numpy()


def test_relabelled_photo_is_predicted_with_its_new_label(
    relabelled: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    photos = [str(p) for p in relabelled["photos"]]
    capsys.readouterr()
    assert cli.main(["predict", "--json", "--model", str(cli.bundled_model_path()), *photos]) == 0
    before = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert before == ["Cat"] * len(photos)
    assert cli.main(["predict", "--json", "--model", str(relabelled["out"]), *photos]) == 0
    after = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert after == ["Dog"] * len(photos)


def test_update_is_the_sgd_pytorch_computes(relabelled: dict[str, Any]) -> None:
    original = load_spec(cli.bundled_model_path())
    updated = load_spec(relabelled["out"])
    image_type = original.description.input[0].type.imageType
    images = np.stack([load_tensor(p, image_type) for p in relabelled["photos"]])
    blobs = reference.forward(original, images)
    pooled = _layers(original)["dense_5"].input[0]
    features = torch.from_numpy(blobs[pooled].reshape(len(images), -1))
    targets = torch.full((len(images),), LABELS.index("Dog"))

    expected = _sgd_in_torch(original, features, targets)
    actual = _head(updated)
    for name, value in expected.items():
        np.testing.assert_allclose(
            actual[name].detach().numpy(), value, atol=WEIGHT_ATOL, rtol=0, err_msg=name
        )
    np.testing.assert_allclose(
        reference.probabilities(updated, images),
        _head_probabilities(features, expected),
        atol=PROBABILITY_ATOL,
        rtol=0,
    )


def test_update_changes_only_the_head(relabelled: dict[str, Any]) -> None:
    original = load_spec(cli.bundled_model_path())
    updated = load_spec(relabelled["out"])
    assert validate_updatable(updated) == []
    before, after = _layers(original), _layers(updated)
    assert list(before) == list(after)
    for name, layer in before.items():
        if name in UPDATABLE:
            assert layer.SerializeToString() != after[name].SerializeToString()
        else:
            assert layer.SerializeToString(deterministic=True) == after[name].SerializeToString(
                deterministic=True
            ), name
    assert updated.description == original.description
    assert (
        updated.neuralNetworkClassifier.updateParams
        == original.neuralNetworkClassifier.updateParams
    )
