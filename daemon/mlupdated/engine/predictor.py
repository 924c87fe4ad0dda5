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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..coreml.images import DEFAULT_MAX_PIXELS, image_input
from ..coreml.spec import CLASSIC_KINDS, apple_only_reason
from ..errors import ImageError, InvalidModelError, MlupdatedError, UnsupportedModelError
from .decoding import decode_batch, decode_workers
from .knn import KnnClassifier
from .network import NEURAL_NETWORK_KINDS, default_outputs, probabilities_blob
from .runtime import DEFAULT_THREADS, Threads, load_session
from .sequence_feeds import SequenceSessions, with_batch_axis

if TYPE_CHECKING:
    # The classic stages build ONNX-ML graphs with the onnx package: imported when a
    # model has one, so that a neural network's predict never pays for that import.
    from .classic import ClassicStage

Label = str | int
DEFAULT_BATCH_SIZE = 16
PIPELINE_KINDS = ("pipeline", "pipelineClassifier", "pipelineRegressor")
KNN_KIND = "kNearestNeighborsClassifier"


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


@dataclass
class _Classified:
    """A stage's classification of a batch (labels and per-example probabilities)."""

    labels: list[Label]
    probabilities: list[dict[Label, float]]


def _class_labels(nn: Any) -> list[Label]:
    which = nn.WhichOneof("ClassLabels")
    if which == "int64ClassLabels":
        return [int(v) for v in nn.int64ClassLabels.vector]
    if which == "stringClassLabels":
        return [str(v) for v in nn.stringClassLabels.vector]
    raise InvalidModelError("classifier has no class labels")


class _NetworkStage:
    """A neural network (plain, classifier or regressor) run through onnxruntime."""

    def __init__(self, spec: Any, *, cache: bool, threads: Threads = DEFAULT_THREADS) -> None:
        self.spec = spec
        self.kind = spec.WhichOneof("Type")
        # Inputs fed as sequences run in a graph compiled for their lengths.
        self.sequences = SequenceSessions(
            spec,
            lambda lengths: load_session(spec, cache=cache, threads=threads, sequences=lengths),
        )
        self.session, self.declared_error = self._declared_session(cache, threads)
        # Core ML feeds zeros for an optional multi-array input left out (a recurrent
        # layer's initial state).
        self.optional = {
            f.name
            for f in spec.description.input
            if f.type.isOptional and f.type.WhichOneof("Type") == "multiArrayType"
        }
        self.outputs = default_outputs(spec)
        self.prob_blob = probabilities_blob(spec)
        self.labels = _class_labels(spec.neuralNetworkClassifier) if self.prob_blob else []
        if self.prob_blob is not None and not self.labels:
            raise InvalidModelError("classifier has an empty label list")

    def _declared_session(
        self, cache: bool, threads: Threads
    ) -> tuple[Any, InvalidModelError | None]:
        """The session for the inputs as declared. A network whose shapes only fit
        when an input is a sequence (an embedding over a sentence of several words, say)
        has none: its error is kept, for a feed of the declared shapes."""
        try:
            return load_session(self.spec, cache=cache, threads=threads), None
        except InvalidModelError as exc:
            if not self.sequences.declared:
                raise
            names = ", ".join(f"'{name}'" for name in self.sequences.declared)
            return None, InvalidModelError(
                f"{exc.reason} (with {names} as declared; Core ML also takes a sequence there)",
                layer=exc.layer,
            )

    def run(self, features: dict[str, Any]) -> _Classified | None:
        session = self.sequences.session_for(features) or self.session
        if session is None:
            raise self.declared_error or InvalidModelError("the network has no graph to run")
        feeds = {}
        for name in session.input_names:
            if name not in features and name in self.optional and features:
                n = len(next(iter(features.values())))
                feeds[name] = np.zeros([n, *session.input_shapes[name][1:]], np.float32)
                continue
            if name not in features:
                raise InvalidModelError(f"network input {name!r} is not provided")
            feeds[name] = _fit_shape(features[name], session.input_shapes[name])
        results = session.run(feeds)
        if session is not self.session:
            results = with_batch_axis(results)
        if self.prob_blob is None:
            features.update(results)
            return None
        probs = results[self.prob_blob]
        probs = probs.reshape(probs.shape[0], -1)
        if probs.shape[1] != len(self.labels):
            raise InvalidModelError(
                f"classifier produces {probs.shape[1]} probabilities for {len(self.labels)} labels"
            )
        description = self.spec.description
        # A classifier's other outputs (a familiarity score, say) pass through as they are.
        features.update({k: v for k, v in results.items() if k != self.prob_blob})
        labels = [self.labels[int(i)] for i in np.argmax(probs, axis=1)]
        dicts = [{lab: float(p) for lab, p in zip(self.labels, row, strict=True)} for row in probs]
        features[description.predictedProbabilitiesName or self.prob_blob] = dicts
        if description.predictedFeatureName:
            features[description.predictedFeatureName] = labels
        return _Classified(labels, dicts)


def _fit_shape(value: Any, shape: list[Any]) -> Any:
    """A batch in the graph's declared layout when only axes of size 1 differ (a
    multi-array declared ``[1, D]`` is fed as ``[N, D]``; a classic stage's ``[N, D]``
    output feeds a network's ``[N, D, 1, 1]``)."""
    if not isinstance(value, np.ndarray) or len(shape) < 1:
        return value
    dims = shape[1:]
    if not all(isinstance(d, int) for d in dims) or list(value.shape[1:]) == dims:
        return value
    if int(np.prod(value.shape[1:])) == int(np.prod(dims)):
        return value.reshape(len(value), *dims)
    return value


class _KnnStage:
    """A k-nearest-neighbours classifier run in NumPy."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.knn = KnnClassifier(spec.kNearestNeighborsClassifier)
        inputs = [f.name for f in spec.description.input]
        if len(inputs) != 1:
            raise InvalidModelError("a k-NN classifier takes exactly one input")
        self.input = inputs[0]

    def run(self, features: dict[str, Any]) -> _Classified:
        if self.input not in features:
            raise InvalidModelError(f"k-NN input {self.input!r} is not provided")
        x = np.asarray(features[self.input], dtype=np.float32)
        results = self.knn.predict(x.reshape(x.shape[0], -1))
        labels = [r.label for r in results]
        dicts = [r.probabilities for r in results]
        description = self.spec.description
        if description.predictedFeatureName:
            features[description.predictedFeatureName] = labels
        if description.predictedProbabilitiesName:
            features[description.predictedProbabilitiesName] = dicts
        return _Classified(labels, dicts)


if TYPE_CHECKING:
    _Stage = _NetworkStage | _KnnStage | ClassicStage


def _is_classic(stage: Any) -> bool:
    return not isinstance(stage, _NetworkStage | _KnnStage)


def _stages(
    spec: Any, *, cache: bool, threads: Threads = DEFAULT_THREADS, where: str = ""
) -> list[_Stage]:
    kind = spec.WhichOneof("Type")
    apple_only = apple_only_reason(kind)
    if apple_only is not None:
        raise UnsupportedModelError(f"{where}{apple_only}")
    try:
        if kind in NEURAL_NETWORK_KINDS:
            return [_NetworkStage(spec, cache=cache, threads=threads)]
        if kind == KNN_KIND:
            return [_KnnStage(spec)]
        if kind in CLASSIC_KINDS:
            from .classic import ClassicStage

            return [ClassicStage(spec)]
    except MlupdatedError as exc:
        if where:
            exc.reason = f"{where}{exc.reason}"
            exc.args = (exc.reason,)
        raise
    if kind in PIPELINE_KINDS:
        pipeline = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        stages: list[_Stage] = []
        for index, model in enumerate(pipeline.models):
            stages.extend(
                _stages(
                    model,
                    cache=cache,
                    threads=threads,
                    where=f"{where}pipeline stage {index}: ",
                )
            )
        if not stages:
            raise InvalidModelError("pipeline has no models")
        return stages
    raise UnsupportedModelError(f"{where}model type {kind!r} cannot be run by mlupdated")


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
    ``threads`` is how its onnxruntime sessions use the CPUs (``runtime.Threads``):
    onnxruntime's thread count and no spinning by default (the daemon, the trainer, a
    library user); the one-shot ``predict`` asks ``runtime.one_shot_threads`` what the
    machine has idle as it starts.
    """

    def __init__(
        self,
        spec: Any,
        *,
        path: str | os.PathLike[str] | None = None,
        cache: bool = True,
        threads: Threads = DEFAULT_THREADS,
    ) -> None:
        self.spec = spec
        self.path = str(path) if path is not None else None
        self.threads = threads
        try:
            self._stages = _stages(spec, cache=cache, threads=threads)
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
        from ..coreml.spec import load_spec

        return cls(load_spec(path), path=path, cache=cache, threads=threads)

    @property
    def is_classifier(self) -> bool:
        """Whether the model is a classifier (labels and probabilities out)."""
        return any(
            isinstance(s, _KnnStage)
            or (isinstance(s, _NetworkStage) and s.prob_blob)
            or (_is_classic(s) and s.is_classifier)
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
                if _is_classic(stage):
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
