"""k-nearest-neighbours classification in NumPy (``KNearestNeighborsClassifier``).

Linear index, squared Euclidean distance, ``k`` from ``numberOfNeighbors.defaultValue``
(capped at the number of stored samples). Each of the k nearest samples votes for its
label: weight 1 (uniform) or ``1 / distance`` (inverse distance; a sample at distance
0 takes the whole vote, shared between exact matches). Probabilities are the vote
shares; the label is the one with the largest share. Core ML does not document ties;
we break a tied vote in favour of the label whose nearest voter is closest (then by
sample order), which makes the result independent of label order. Neighbours at
equal distance are taken in sample order. With no stored sample, the prediction is
the default label with no probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidModelError

Label = str | int


@dataclass(frozen=True)
class KnnResult:
    """One k-NN prediction: the label and the vote share of each label that got votes."""

    label: Label
    probabilities: dict[Label, float]


class KnnClassifier:
    """The NumPy runner of a ``KNearestNeighborsClassifier`` spec message."""

    def __init__(self, knn: Any) -> None:
        index = knn.nearestNeighborsIndex
        if index.WhichOneof("IndexType") not in (None, "linearIndex", "singleKdTreeIndex"):
            raise InvalidModelError("k-NN index type is not known")
        self.dimensions = int(index.numberOfDimensions)
        samples = [list(v.vector) for v in index.floatSamples]
        if any(len(s) != self.dimensions for s in samples):
            raise InvalidModelError(
                f"a k-NN sample does not have numberOfDimensions={self.dimensions} values"
            )
        self.samples = np.asarray(samples, dtype=np.float64).reshape(-1, self.dimensions)
        which = knn.WhichOneof("ClassLabels")
        self.labels: list[Label] = (
            list(knn.int64ClassLabels.vector)
            if which == "int64ClassLabels"
            else list(knn.stringClassLabels.vector)
        )
        if len(self.labels) != len(self.samples):
            raise InvalidModelError(
                f"k-NN has {len(self.samples)} samples but {len(self.labels)} labels"
            )
        default = knn.WhichOneof("DefaultClassLabel")
        self.default_label: Label = (
            int(knn.defaultInt64Label)
            if default == "defaultInt64Label"
            else str(knn.defaultStringLabel)
        )
        self.k = int(knn.numberOfNeighbors.defaultValue) or 1
        self.inverse_distance = knn.WhichOneof("WeightingScheme") == "inverseDistanceWeighting"

    def predict(self, features: np.ndarray) -> list[KnnResult]:
        """Classify each row of ``features`` (``[N, D]``; other shapes are flattened)."""
        x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if x.shape[1] != self.dimensions:
            raise InvalidModelError(
                f"k-NN input has {x.shape[1]} values, the index has {self.dimensions} dimensions"
            )
        if not len(self.samples):
            return [KnnResult(self.default_label, {}) for _ in range(len(x))]
        # Squared Euclidean distances of every query to every sample.
        d = (
            (x * x).sum(1)[:, None]
            - 2.0 * x @ self.samples.T
            + (self.samples * self.samples).sum(1)[None, :]
        )
        d = np.maximum(d, 0.0)
        k = min(self.k, len(self.samples))
        return [self._vote(row, k) for row in d]

    def _vote(self, dist: np.ndarray, k: int) -> KnnResult:
        order = np.argsort(dist, kind="stable")[:k]
        nearest = dist[order]
        if self.inverse_distance:
            exact = nearest == 0.0
            weights = exact.astype(np.float64) if exact.any() else 1.0 / nearest
        else:
            weights = np.ones(k)
        votes: dict[Label, float] = {}
        first_seen: dict[Label, int] = {}
        for rank, (i, w) in enumerate(zip(order, weights, strict=True)):
            label = self.labels[int(i)]
            votes[label] = votes.get(label, 0.0) + float(w)
            first_seen.setdefault(label, rank)
        total = sum(votes.values())
        best = max(votes, key=lambda lab: (votes[lab], -first_seen[lab]))
        return KnnResult(best, {lab: v / total for lab, v in votes.items()})
