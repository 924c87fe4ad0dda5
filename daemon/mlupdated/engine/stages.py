"""The stages a ``Predictor`` runs one after another: a neural network through
onnxruntime, a k-NN classifier in NumPy, a classic model (``classic.ClassicStage``);
a pipeline is flattened into its stages. Each stage reads the features it needs from
a shared dict of batched features and adds its outputs to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..coreml.spec import (
    CLASSIC_KINDS,
    KNN_KIND,
    PIPELINE_KINDS,
    apple_only_reason,
    pipeline_stages,
)
from ..errors import EngineError, InvalidModelError, MlupdatedError, UnsupportedModelError
from .dataflow import has_control_flow
from .graph_cache import load_session
from .knn import KnnClassifier
from .network import NEURAL_NETWORK_KINDS, default_outputs, network_of, probabilities_blob
from .sequence_feeds import SequenceSessions, with_batch_axis
from .threads import DEFAULT_THREADS, Threads

if TYPE_CHECKING:
    # The classic stages build ONNX-ML graphs with the onnx package: imported when a
    # model has one, so that a neural network's predict never pays for that import.
    from .classic import ClassicStage

Label = str | int


@dataclass
class Classified:
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


class NetworkStage:
    """A neural network (plain, classifier or regressor) run through onnxruntime."""

    def __init__(
        self,
        spec: Any,
        *,
        cache: bool,
        threads: Threads = DEFAULT_THREADS,
        source: str | None = None,
    ) -> None:
        self.spec = spec
        self.kind = spec.WhichOneof("Type")
        self.source = source
        # Inputs fed as sequences run in a graph compiled for their lengths.
        self.sequences = SequenceSessions(
            spec,
            lambda lengths: load_session(
                spec, cache=cache, threads=threads, sequences=lengths, source=source
            ),
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
        # Each example may take its own path through a branch or loop: one at a time.
        self.one_at_a_time = has_control_flow(network_of(spec).layers)
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
            return load_session(self.spec, cache=cache, threads=threads, source=self.source), None
        except InvalidModelError as exc:
            if not self.sequences.declared:
                raise
            names = ", ".join(f"'{name}'" for name in self.sequences.declared)
            return None, InvalidModelError(
                f"{exc.reason} (with {names} as declared; Core ML also takes a sequence there)",
                layer=exc.layer,
            )

    def _run_session(self, session: Any, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.one_at_a_time and feeds and len(next(iter(feeds.values()))) > 1:
            return _run_each(session, feeds)
        return session.run(feeds)

    def run(self, features: dict[str, Any]) -> Classified | None:
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
        results = self._run_session(session, feeds)
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
        # tolist() makes the Python floats in one pass (half the time for 1000 labels).
        dicts = [dict(zip(self.labels, row, strict=True)) for row in probs.tolist()]
        features[description.predictedProbabilitiesName or self.prob_blob] = dicts
        if description.predictedFeatureName:
            features[description.predictedFeatureName] = labels
        return Classified(labels, dicts)


def _run_each(session: Any, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run a batch one example at a time; the results stacked again."""
    n = len(next(iter(feeds.values())))
    parts = [session.run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    try:
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    except ValueError as exc:  # a loop made outputs of other sizes for other examples
        raise EngineError(
            f"the examples of a batch give outputs of different shapes: {exc}"
        ) from exc


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


class KnnStage:
    """A k-nearest-neighbours classifier run in NumPy."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.knn = KnnClassifier(spec.kNearestNeighborsClassifier)
        inputs = [f.name for f in spec.description.input]
        if len(inputs) != 1:
            raise InvalidModelError("a k-NN classifier takes exactly one input")
        self.input = inputs[0]

    def run(self, features: dict[str, Any]) -> Classified:
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
        return Classified(labels, dicts)


if TYPE_CHECKING:
    Stage = NetworkStage | KnnStage | ClassicStage


def is_classic(stage: Any) -> bool:
    return not isinstance(stage, NetworkStage | KnnStage)


def build_stages(
    spec: Any,
    *,
    cache: bool,
    threads: Threads = DEFAULT_THREADS,
    where: str = "",
    source: str | None = None,
) -> list[Stage]:
    """The stages that run ``spec`` (a pipeline's, flattened), each network's session
    loaded; ``source`` names the spec's bytes for the graph cache (see ``Predictor``),
    and a pipeline's stage ``i`` is named ``source/i``."""
    kind = spec.WhichOneof("Type")
    apple_only = apple_only_reason(kind)
    if apple_only is not None:
        raise UnsupportedModelError(f"{where}{apple_only}")
    try:
        if kind in NEURAL_NETWORK_KINDS:
            return [NetworkStage(spec, cache=cache, threads=threads, source=source)]
        if kind == KNN_KIND:
            return [KnnStage(spec)]
        if kind in CLASSIC_KINDS:
            from .classic import ClassicStage

            return [ClassicStage(spec)]
    except MlupdatedError as exc:
        if where:
            exc.reason = f"{where}{exc.reason}"
            exc.args = (exc.reason,)
        raise
    if kind in PIPELINE_KINDS:
        stages: list[Stage] = []
        for index, model in enumerate(pipeline_stages(spec)):
            stages.extend(
                build_stages(
                    model,
                    cache=cache,
                    threads=threads,
                    where=f"{where}pipeline stage {index}: ",
                    source=f"{source}/{index}" if source is not None else None,
                )
            )
        if not stages:
            raise InvalidModelError("pipeline has no models")
        return stages
    raise UnsupportedModelError(f"{where}model type {kind!r} cannot be run by mlupdated")
