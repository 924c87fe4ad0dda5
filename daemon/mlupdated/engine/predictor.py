"""Predictions from a Core ML model: neural networks through onnxruntime, k-NN in
NumPy, the classic model types (GLM, trees, SVM, the feature transformers) through
onnxruntime's ONNX-ML operators, pipelines of any of these stage by stage.

Everything that can be refused is refused when the ``Predictor`` is built (every
network compiled, every layer supported), never halfway through a batch. Image files
that cannot be read become ``PredictionFailure`` entries while the other images are
still predicted, in one batched run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..coreml.images import DEFAULT_MAX_PIXELS, image_input
from ..errors import ImageError, InvalidModelError, MlupdatedError, UnsupportedModelError
from .decoding import decode_batch, decode_workers
from .stages import KnnStage, Label, NetworkStage, build_stages, is_classic
from .threads import DEFAULT_THREADS, Threads

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Prediction:
    """One example's result: top label and probabilities (classifiers), raw outputs."""

    path: str | None
    label: Label | None
    probabilities: dict[Label, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictionFailure:
    """An input that could not be predicted, with the one-line reason."""

    path: str
    error: str


def _attach_path(exc: MlupdatedError, path: str | os.PathLike[str] | None) -> MlupdatedError:
    """Name the model file in an error raised before the path was known."""
    if path is not None and exc.path is None:
        exc.path = str(path)
        exc.args = (f"{path}: {exc.reason}",)
    return exc


class Predictor:
    """Runs a Core ML model (neural network, k-NN, classic model, or a pipeline of those).

    ``Predictor(spec, path=...)`` compiles every network at once (through the graph
    cache), so an unsupported layer is refused here with its name and type.
    ``threads`` is how its onnxruntime sessions use the CPUs (``threads.Threads``):
    onnxruntime's thread count and no spinning by default (the daemon, the trainer, a
    library user); the one-shot ``predict`` asks ``threads.one_shot_threads`` what the
    machine has idle as it starts. ``source`` names the bytes ``spec`` was parsed from,
    unchanged since (their SHA-256, from ``coreml.spec.load_spec_and_digest``, as
    :meth:`from_path` does): the graph cache then keys the compiled graphs by it and
    need not serialize the spec again (45 ms for the default model's 14 MB).
    """

    def __init__(
        self,
        spec: Any,
        *,
        path: str | os.PathLike[str] | None = None,
        cache: bool = True,
        threads: Threads = DEFAULT_THREADS,
        source: str | None = None,
    ) -> None:
        self.spec = spec
        self.path = str(path) if path is not None else None
        self.threads = threads
        try:
            self._stages = build_stages(spec, cache=cache, threads=threads, source=source)
        except MlupdatedError as exc:
            raise _attach_path(exc, path) from exc.__cause__
        self.image_feature = image_input(spec)
        description = spec.description
        self.output_names = [o.name for o in description.output]

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, cache: bool = True, threads: Threads = DEFAULT_THREADS
    ) -> Predictor:
        """Load a ``.mlmodel`` file and build its predictor."""
        from ..coreml.spec import load_spec_and_digest

        spec, digest = load_spec_and_digest(path)
        return cls(spec, path=path, cache=cache, threads=threads, source=digest)

    @property
    def is_classifier(self) -> bool:
        """Whether the model is a classifier (labels and probabilities out)."""
        return any(
            isinstance(s, KnnStage)
            or (isinstance(s, NetworkStage) and s.prob_blob)
            or (is_classic(s) and s.is_classifier)
            for s in self._stages
        )

    def predict_tensors(
        self, feeds: Mapping[str, np.ndarray], *, paths: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Predict a batch: ``feeds`` maps each model input to an array whose axis 0
        is the batch (images as float32 ``[N, C, H, W]``, 0..255)."""
        features: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()}
        return self.predict_features(features, paths=paths)

    def predict_features(
        self, features: Mapping[str, Any], *, paths: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Predict a batch of any feature types, batch first: a double or int64 feature
        as an ``[N]`` array, strings as N strings, a multi-array ``[N, *shape]``, a
        dictionary as N dicts, an image as float32 ``[N, C, H, W]`` (0..255).

        The features are not checked against the model's description here (see
        ``coreml.features`` for that)."""
        features = dict(features)
        sizes = {len(v) for v in features.values()}
        if len(sizes) != 1:
            raise InvalidModelError(f"inputs have different batch sizes {sorted(sizes)}")
        n = sizes.pop()
        classified: Any = None
        try:
            for stage in self._stages:
                if is_classic(stage):
                    result = stage.run(features, n)
                else:
                    result = stage.run(features)
                if result is not None:
                    classified = result
        except MlupdatedError as exc:
            raise _attach_path(exc, self.path) from exc.__cause__
        names = list(paths) if paths is not None else [None] * n
        predictions = []
        for i in range(n):
            outputs = {name: features[name][i] for name in self.output_names if name in features}
            if classified is not None:
                predictions.append(
                    Prediction(names[i], classified.labels[i], classified.probabilities[i], outputs)
                )
            else:
                predictions.append(Prediction(names[i], None, {}, outputs))
        return predictions

    def predict_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        resize: str = "scaleFill",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pixels: int | None = None,
    ) -> list[Prediction | PredictionFailure]:
        """Predict image files, in order; unreadable images become ``PredictionFailure``.

        ``max_pixels`` is the decompression-bomb limit (``None``: the default one).
        """
        feature = self.image_feature
        if feature is None:
            raise UnsupportedModelError("model has no image input", path=self.path)
        others = [f.name for f in self.spec.description.input if f.name != feature.name]
        if others:
            raise UnsupportedModelError(
                f"model needs inputs besides the image: {', '.join(others)}", path=self.path
            )
        batch_size = max(1, int(batch_size))
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        workers = decode_workers(self.threads.count)
        paths = [str(p) for p in paths]
        results: list[Prediction | PredictionFailure | None] = [None] * len(paths)
        # A batch's files are decoded together (on several threads), then run together;
        # only one batch of tensors is held at a time, however many files there are.
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            decoded = decode_batch(
                chunk, feature.type.imageType, resize=resize, max_pixels=limit, workers=workers
            )
            pending = []
            for offset, tensor in enumerate(decoded):
                if isinstance(tensor, ImageError):
                    results[start + offset] = PredictionFailure(chunk[offset], tensor.reason)
                else:
                    pending.append((start + offset, tensor))
            if not pending:
                continue
            preds = self.predict_tensors(
                {feature.name: np.stack([t for _, t in pending])},
                paths=[paths[i] for i, _ in pending],
            )
            for (i, _), pred in zip(pending, preds, strict=True):
                results[i] = _finite_or_failure(pred)
        return [r for r in results if r is not None]


NON_FINITE_REASON = "the model produced non-finite outputs (NaN or infinite weights?)"


def _finite_or_failure(prediction: Prediction) -> Prediction | PredictionFailure:
    # A made-up label over NaN probabilities is worse than no answer, and NaN is not
    # even valid JSON for strict readers of ``predict --json``.
    arrays = [np.asarray(list(prediction.probabilities.values()), dtype=np.float64)]
    for value in prediction.outputs.values():
        array = np.asarray(list(value.values()) if isinstance(value, dict) else value)
        if array.dtype.kind in "fc":
            arrays.append(array)
    if all(np.isfinite(array).all() for array in arrays):
        return prediction
    return PredictionFailure(str(prediction.path), NON_FINITE_REASON)
