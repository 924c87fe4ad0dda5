"""The Predictor beyond single networks: k-nearest-neighbours classifiers (alone and
as the last stage of a pipeline) against a brute-force NumPy reference, and plain
(non-classifier) networks' raw outputs."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from mlupdated.engine.predictor import Predictor
from mlupdated.errors import UnsupportedModelError
from torch.nn import functional as F

from .helpers import assert_close, build_spec, rng

D = 4


def _knn_spec(samples, labels, *, k: int, scheme: str, input_name: str = "features"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

        default = "none" if isinstance(labels[0], str) else -1
        b = KNearestNeighborsClassifierBuilder(
            input_name=input_name,
            output_name="label",
            number_of_dimensions=samples.shape[1],
            default_class_label=default,
            number_of_neighbors=k,
            weighting_scheme=scheme,
        )
        b.add_samples(samples.tolist(), list(labels))
    return b.spec


def _reference(samples, labels, queries, *, k: int, scheme: str):
    """Brute force: nearest first (ties by sample order), votes, shares, and a tied vote
    going to the label whose nearest voter is closest."""
    out = []
    for q in queries.astype(np.float64):
        dist = [float(np.sum((s.astype(np.float64) - q) ** 2)) for s in samples]
        order = sorted(range(len(samples)), key=lambda i: (dist[i], i))[:k]
        if scheme == "inverse_distance":
            zero = [i for i in order if dist[i] == 0.0]
            weights = (
                {i: (1.0 if i in zero else 0.0) for i in order}
                if zero
                else {i: 1.0 / dist[i] for i in order}
            )
        else:
            weights = {i: 1.0 for i in order}
        votes: dict = {}
        for i in order:
            votes[labels[i]] = votes.get(labels[i], 0.0) + weights[i]
        total = sum(votes.values())
        first = {}
        for rank, i in enumerate(order):
            first.setdefault(labels[i], rank)
        best = max(votes, key=lambda lab: (votes[lab], -first[lab]))
        out.append((best, {lab: v / total for lab, v in votes.items()}))
    return out


@pytest.mark.parametrize("scheme", ["uniform", "inverse_distance"])
@pytest.mark.parametrize("k", [1, 3, 4])
@pytest.mark.parametrize("labels", [["a", "b", "c"], [10, 20, 30]])
def test_knn_matches_brute_force(scheme: str, k: int, labels) -> None:
    r = rng(k)
    samples = r.standard_normal((12, D)).astype(np.float32)
    sample_labels = [labels[i % 3] for i in range(12)]
    spec = _knn_spec(samples, sample_labels, k=k, scheme=scheme)
    queries = np.concatenate([r.standard_normal((6, D)), samples[:2]]).astype(np.float32)
    got = Predictor(spec).predict_tensors({"features": queries})
    want = _reference(samples, sample_labels, queries, k=k, scheme=scheme)
    for g, (label, probs) in zip(got, want, strict=True):
        assert g.label == label and type(g.label) is type(label)
        assert g.probabilities.keys() == probs.keys()
        for lab, p in probs.items():
            assert abs(g.probabilities[lab] - p) <= 1e-6


def test_knn_tie_goes_to_the_nearest_voter() -> None:
    samples = np.array([[0, 0, 0, 2], [0, 0, 0, -1], [0, 0, 0, 3], [0, 0, 0, -4]], np.float32)
    spec = _knn_spec(samples, ["far", "near", "far", "near"], k=2, scheme="uniform")
    (pred,) = Predictor(spec).predict_tensors({"features": np.zeros((1, D), np.float32)})
    assert pred.label == "near"
    assert pred.probabilities == {"near": 0.5, "far": 0.5}


def _feature_extractor(weights: np.ndarray):
    def add(b):
        b.add_convolution(
            "conv",
            kernel_channels=3,
            output_channels=D,
            height=3,
            width=3,
            stride_height=1,
            stride_width=1,
            border_mode="same",
            groups=1,
            W=weights.transpose(2, 3, 1, 0),
            b=None,
            has_bias=False,
            input_name="image",
            output_name="c",
        )
        b.add_pooling("gap", 0, 0, 1, 1, "AVERAGE", "VALID", "c", "p", is_global=True)
        b.add_flatten("flat", 0, "p", "features")
        b.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255)

    return build_spec({"image": (3, 8, 8)}, ["features"], add)


def test_pipeline_of_network_and_knn() -> None:
    from mlupdated.coreml.proto import Model_pb2

    r = rng(9)
    weights = r.standard_normal((D, 3, 3, 3)).astype(np.float32)
    extractor = _feature_extractor(weights)
    samples = r.standard_normal((10, D)).astype(np.float32) * 0.3
    sample_labels = ["x", "y"] * 5
    knn = _knn_spec(samples, sample_labels, k=3, scheme="inverse_distance")
    spec = Model_pb2.Model(specificationVersion=4)
    spec.description.input.extend(extractor.description.input)
    spec.description.output.extend(knn.description.output)
    spec.description.predictedFeatureName = "label"
    for stage in (extractor, knn):
        spec.pipelineClassifier.pipeline.models.add().CopyFrom(stage)

    images = r.uniform(0, 255, (5, 3, 8, 8)).astype(np.float32)
    got = Predictor(spec).predict_tensors({"image": images})
    feats = F.conv2d(torch.from_numpy(images / 255), torch.from_numpy(weights), padding=1)
    feats = feats.mean((2, 3)).numpy()
    want = _reference(samples, sample_labels, feats, k=3, scheme="inverse_distance")
    for g, (label, probs) in zip(got, want, strict=True):
        assert g.label == label
        for lab, p in probs.items():
            assert abs(g.probabilities[lab] - p) <= 1e-4


def test_plain_network_reports_raw_outputs() -> None:
    weights = rng(1).standard_normal((D, 3, 3, 3)).astype(np.float32)
    spec = _feature_extractor(weights)
    images = rng(2).uniform(0, 255, (3, 3, 8, 8)).astype(np.float32)
    preds = Predictor(spec).predict_tensors({"image": images})
    feats = F.conv2d(torch.from_numpy(images / 255), torch.from_numpy(weights), padding=1)
    for pred, row in zip(preds, feats.mean((2, 3)).numpy(), strict=True):
        assert pred.label is None and pred.probabilities == {}
        assert_close(pred.outputs["features"].reshape(-1), row)


def test_apple_only_model_kinds_are_refused() -> None:
    from mlupdated.coreml.proto import Model_pb2

    spec = Model_pb2.Model(specificationVersion=4)
    spec.wordTagger.SetInParent()
    with pytest.raises(UnsupportedModelError, match="'wordTagger' can only be run by Apple"):
        Predictor(spec)
