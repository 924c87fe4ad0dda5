"""Personalizing the bundled model with ``mlupdated update`` and its default settings.

The mechanism on one photo (scikit-image's cat): relabelled ``Dog``, one default update
makes the model call it ``Dog``; the update is the SGD PyTorch computes on the same
head inputs, over the model's rehearsal set (the ``familiar`` rows, with their labels
from the metadata) plus the correction repeated ``correction_weight`` times, or over
the correction alone with ``--no-rehearsal``; nothing but ``classify`` changes. (Ten
corrections against 185 unseen photos: test_real_photos.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlupdated import cli
from mlupdated.coreml.images import load_tensor
from mlupdated.coreml.spec import load_spec
from mlupdated.coreml.validate import validate_updatable
from mlupdated.train.task import epoch_permutation

from . import reference
from .photos import CAT_PHOTOS, save_photo

UPDATABLE = ("classify",)
LABELS = ["Cat", "Dog"]
REHEARSAL_KEY = "mlupdated.rehearsal"
SEED = 0
WEIGHT_ATOL = 1e-5
PROBABILITY_ATOL = 1e-4


def _update(root: Path, *options: str) -> dict[str, Any]:
    """The cat photo filed under ``Dog`` and one default update on it."""
    dog_dir = root / "data" / "Dog"
    dog_dir.mkdir(parents=True)
    photos = [save_photo(name, dog_dir) for name in CAT_PHOTOS]
    out = root / "updated.mlmodel"
    model = str(cli.bundled_model_path())
    args = ["update", "--model", model, "--data", str(root / "data"), "--out", str(out)]
    assert cli.main([*args, "--seed", str(SEED), *options]) == 0
    return {"photos": photos, "out": out}


@pytest.fixture(scope="module")
def relabelled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A default update (the rehearsal set on)."""
    return _update(tmp_path_factory.mktemp("personalize"))


@pytest.fixture(scope="module")
def relabelled_alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same update with ``--no-rehearsal``: the correction alone."""
    return _update(tmp_path_factory.mktemp("personalize_alone"), "--no-rehearsal")


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


def _rehearsal(spec: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The rehearsal set the metadata names: the rows of its layer, their labels (as
    class indices) and how many times a correction counts."""
    entry = json.loads(spec.description.metadata.userDefined[REHEARSAL_KEY])
    ip = _layers(spec)[entry["layer"]].innerProduct
    rows = reference.decode(ip.weights).reshape(ip.outputChannels, ip.inputChannels)
    targets = torch.tensor([LABELS.index(label) for label in entry["labels"]])
    return torch.from_numpy(rows.copy()), targets, int(entry["correction_weight"])


def _sgd_in_torch(spec: Any, features: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """The default update done by PyTorch: SGD over mini-batches (mean cross-entropy
    per mini-batch, the last partial one kept), the rows in the order the trainer
    takes them in each epoch (its seeded permutation, when shuffling is on)."""
    update = spec.neuralNetworkClassifier.updateParams
    sgd = update.optimizer.sgdOptimizer
    batch = int(sgd.miniBatchSize.defaultValue)
    head = _head(spec)
    optimizer = torch.optim.SGD(
        list(head.values()), lr=sgd.learningRate.defaultValue, momentum=sgd.momentum.defaultValue
    )
    count = len(features)
    for epoch in range(update.epochs.defaultValue):
        if update.shuffle.defaultValue:
            order = torch.from_numpy(epoch_permutation(count, seed=SEED, epoch=epoch))
        else:
            order = torch.arange(count)
        for start in range(0, count, batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            logits = features[index] @ head["classify.weight"].T + head["classify.bias"]
            torch.nn.functional.cross_entropy(logits, targets[index]).backward()
            optimizer.step()
    return {k: v.detach().numpy() for k, v in head.items()}


def _head_probabilities(features: torch.Tensor, head: dict[str, np.ndarray]) -> np.ndarray:
    w = {k: torch.from_numpy(v) for k, v in head.items()}
    logits = features @ w["classify.weight"].T + w["classify.bias"]
    return torch.softmax(logits, dim=1).numpy()


def _corrections(spec: Any, photos: list[Path]) -> tuple[np.ndarray, torch.Tensor]:
    """The photos as the model reads them, and the blob ``classify`` reads for each
    (by the PyTorch reading of the spec)."""
    image_type = spec.description.input[0].type.imageType
    images = np.stack([load_tensor(p, image_type) for p in photos])
    blobs = reference.forward(spec, images)
    (cut,) = _layers(spec)["classify"].input
    return images, torch.from_numpy(blobs[cut].reshape(len(images), -1))


def _assert_update_is(
    updated: Any, expected: dict[str, np.ndarray], images: np.ndarray, features: torch.Tensor
) -> None:
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


def test_update_is_the_sgd_pytorch_computes_with_the_rehearsal_set(
    relabelled: dict[str, Any],
) -> None:
    original = load_spec(cli.bundled_model_path())
    updated = load_spec(relabelled["out"])
    images, corrections = _corrections(original, relabelled["photos"])
    rows, rows_targets, weight = _rehearsal(original)
    assert len(rows) == len(rows_targets) > 0 and weight > 1
    # The rehearsal examples first, then each correction repeated ``weight`` times.
    features = torch.cat([rows, corrections.repeat_interleave(weight, dim=0)])
    dog = torch.full((len(corrections) * weight,), LABELS.index("Dog"))
    targets = torch.cat([rows_targets, dog])

    expected = _sgd_in_torch(original, features, targets)
    _assert_update_is(updated, expected, images, corrections)


def test_update_without_rehearsal_is_the_sgd_on_the_corrections_alone(
    relabelled: dict[str, Any], relabelled_alone: dict[str, Any]
) -> None:
    original = load_spec(cli.bundled_model_path())
    updated = load_spec(relabelled_alone["out"])
    images, corrections = _corrections(original, relabelled_alone["photos"])
    targets = torch.full((len(corrections),), LABELS.index("Dog"))

    expected = _sgd_in_torch(original, corrections, targets)
    _assert_update_is(updated, expected, images, corrections)
    # The rehearsal set made a difference: the two updates are not the same weights.
    with_rehearsal = _head(load_spec(relabelled["out"]))["classify.weight"].detach().numpy()
    assert np.abs(with_rehearsal - expected["classify.weight"]).max() > 100 * WEIGHT_ATOL


@pytest.mark.parametrize("fixture", ["relabelled", "relabelled_alone"])
def test_update_changes_only_classify(fixture: str, request: pytest.FixtureRequest) -> None:
    original = load_spec(cli.bundled_model_path())
    updated = load_spec(request.getfixturevalue(fixture)["out"])
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
    # The metadata too, so the rehearsal set and the threshold carry to the next update.
    assert updated.description == original.description
    assert (
        updated.neuralNetworkClassifier.updateParams
        == original.neuralNetworkClassifier.updateParams
    )
