"""Architectures converted by coremltools run through mlupdated's engine and agree
with PyTorch on real photographs (probabilities and logits, max abs error ≤ 1e-4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from mlupdated.coreml.images import load_tensor
from mlupdated.engine.compile import compile_network, probabilities_blob
from mlupdated.engine.predictor import Prediction, Predictor
from mlupdated.engine.runtime import Session

from . import architectures as arch
from .common import convert, torch_reference

ATOL = 1e-4
STRING_LABELS = ("cat", "dog", "bird", "fish", "frog")
INT_LABELS = (7, 3, 11, 0, 42)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[..., arch.Classifier]
    size: int
    color: str
    labels: tuple[str, ...] | tuple[int, ...] = STRING_LABELS


CASES = [
    Case("resnet18", arch.resnet18, 64, "RGB"),
    Case("mobilenet_v1", arch.mobilenet_v1, 48, "GRAYSCALE"),
    Case("mobilenet_v2", arch.mobilenet_v2, 48, "BGR"),
    Case("mobilenet_v3_small", arch.mobilenet_v3_small, 48, "RGB", INT_LABELS),
    Case("efficientnet_b0", arch.efficientnet_b0, 48, "BGR"),
    # An odd size makes the ceil-mode pooling keep a partial last window.
    Case("squeezenet", arch.squeezenet, 45, "RGB"),
    Case("vgg", arch.vgg, 32, "GRAYSCALE"),
    Case("densenet", arch.densenet, 32, "BGR"),
]


@dataclass
class Converted:
    case: Case
    model: arch.Classifier
    spec: object
    path: Path
    predictor: Predictor


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def converted(request: pytest.FixtureRequest, tmp_path_factory) -> Converted:
    case: Case = request.param
    seed = CASES.index(case) + 1
    torch.manual_seed(seed)
    in_ch = 1 if case.color == "GRAYSCALE" else 3
    model = case.build(len(case.labels), in_ch=in_ch)
    arch.randomize_batchnorm(model, torch.Generator().manual_seed(seed))
    model.eval()
    spec = convert(model, size=case.size, color=case.color, labels=case.labels)
    path = tmp_path_factory.mktemp(case.name) / f"{case.name}.mlmodel"
    path.write_bytes(spec.SerializeToString())
    return Converted(case, model, spec, path, Predictor.from_path(path))


def _tensors(converted: Converted, photos: list[Path]) -> np.ndarray:
    image_type = converted.predictor.image_feature.type.imageType
    return np.stack([load_tensor(p, image_type) for p in photos])


def test_probabilities_match_pytorch(converted: Converted, photos: list[Path]) -> None:
    results = converted.predictor.predict_paths(photos)
    assert all(isinstance(r, Prediction) for r in results)
    expected, _ = torch_reference(
        converted.model, _tensors(converted, photos), converted.case.color
    )
    labels = list(converted.case.labels)
    got = np.array([[r.probabilities[lab] for lab in labels] for r in results])
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= ATOL
    for result, row in zip(results, expected, strict=True):
        assert type(result.label) is type(labels[0])
        top2 = np.sort(row)[-2:]
        if top2[1] - top2[0] > 10 * ATOL:  # a clear winner must be the same label
            assert result.label == labels[int(np.argmax(row))]


def test_logits_match_pytorch(converted: Converted, photos: list[Path]) -> None:
    spec = converted.spec
    prob_blob = probabilities_blob(spec)
    nn = spec.neuralNetworkClassifier
    softmax = next(layer for layer in nn.layers if prob_blob in layer.output)
    logits_blob = softmax.input[0]
    tensors = _tensors(converted, photos)
    got = Session(compile_network(spec, outputs=[logits_blob])).run({"image": tensors})
    _, expected = torch_reference(converted.model, tensors, converted.case.color)
    logits = got[logits_blob].reshape(len(tensors), -1)
    assert np.max(np.abs(logits - expected)) <= ATOL


def test_batch_equals_one_at_a_time(converted: Converted, photos: list[Path]) -> None:
    together = converted.predictor.predict_paths(photos, batch_size=len(photos))
    alone = converted.predictor.predict_paths(photos, batch_size=1)
    for a, b in zip(together, alone, strict=True):
        assert a.label == b.label
        for label, p in a.probabilities.items():
            assert abs(p - b.probabilities[label]) <= 1e-6
