"""Core ML's rules for updatable models, checked before any training work.

Each rule has a stable id (``spec-version``, ``backprop-path``, ...) used in messages,
in ``mlupdated inspect`` and in tests. :func:`validate_updatable` lists every broken
rule; :func:`check_updatable` raises ``NotUpdatableError`` with the first. A message
starts with the rule id and names the layer it concerns.
"""

from __future__ import annotations

import os

from ..errors import NotUpdatableError
from .params import LABELS, update_parameters
from .problem import Problem, make_problem
from .proto import Model_pb2
from .spec import (
    KNN_KIND,
    NEURAL_NETWORK_KINDS,
    PIPELINE_KINDS,
    class_labels,
    pipeline_stages,
    updatable_stage,
)
from .validate_network import check_network

MIN_UPDATABLE_SPEC_VERSION = 4


def validate_updatable(spec: Model_pb2.Model) -> list[Problem]:
    """Every updatable-model rule ``spec`` breaks, in a stable order (empty: it is fine)."""
    problems: list[Problem] = []
    kind = spec.WhichOneof("Type")
    _check_header(spec, problems, where="model")
    if kind in PIPELINE_KINDS:
        stages = pipeline_stages(spec)
        marked = [i for i, stage in enumerate(stages) if stage.isUpdatable]
        if any(i != len(stages) - 1 for i in marked):
            problems.append(
                make_problem(
                    "pipeline-stage",
                    f"stage {marked[0]} is marked updatable; only the last stage of a "
                    "pipeline may be",
                )
            )
        stage = updatable_stage(spec)
        if stage is None:
            if spec.isUpdatable:
                problems.append(
                    make_problem("is-updatable", "no pipeline stage is marked updatable")
                )
            return problems
        _check_header(stage, problems, where="updatable stage")
    else:
        stage = spec
    stage_kind = stage.WhichOneof("Type")
    if stage_kind in NEURAL_NETWORK_KINDS:
        problems.extend(check_network(stage))
        problems.extend(_check_parameters(stage, getattr(stage, stage_kind).updateParams))
    elif stage_kind == KNN_KIND:
        problems.extend(_check_knn(stage))
    else:
        problems.append(
            make_problem(
                "updatable-kind",
                f"model type '{stage_kind}' cannot be updated (only neural networks and "
                "k-nearest-neighbours classifiers can)",
            )
        )
    return problems


def check_updatable(spec: Model_pb2.Model, *, path: str | os.PathLike[str] | None = None) -> None:
    """Raise ``NotUpdatableError`` (with ``rule`` and ``layer``) for the first broken rule."""
    problems = validate_updatable(spec)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NotUpdatableError(
            f"not updatable: {first.message}{more}", rule=first.rule, layer=first.layer, path=path
        )


def _check_header(spec: Model_pb2.Model, problems: list[Problem], *, where: str) -> None:
    if spec.specificationVersion < MIN_UPDATABLE_SPEC_VERSION:
        problems.append(
            make_problem(
                "spec-version",
                f"{where} has specification version {spec.specificationVersion}; updatable "
                f"models need {MIN_UPDATABLE_SPEC_VERSION} or later",
            )
        )
    if not spec.isUpdatable:
        problems.append(
            make_problem("is-updatable", f"{where} is not marked updatable (isUpdatable)")
        )


def _check_parameters(spec: Model_pb2.Model, up: object) -> list[Problem]:
    problems: list[Problem] = []
    which = up.optimizer.WhichOneof("OptimizerType") if up.HasField("optimizer") else None  # type: ignore[attr-defined]
    if which is None:
        problems.append(make_problem("optimizer", "no optimizer (SGD or Adam) is set"))
    params = update_parameters(spec)
    checks = [("epochs", "epochs")]
    if which is not None:
        checks += [("mini-batch-size", "mini_batch_size"), ("learning-rate", "learning_rate")]
    for rule, name in checks:
        label = LABELS[name]
        parameter = params.get(name)
        if not parameter.present:
            problems.append(make_problem(rule, f"the model states no {label}"))
        elif not parameter.allowed.contains(parameter.default):
            problems.append(
                make_problem(
                    rule,
                    f"default {label} {parameter.default} is outside its own allowed "
                    f"{parameter.allowed.describe()}",
                )
            )
        elif name in ("epochs", "mini_batch_size") and parameter.default < 1:
            problems.append(make_problem(rule, f"default {label} {parameter.default} is below 1"))
    for name in ("momentum", "beta1", "beta2", "eps"):
        parameter = params.get(name)
        if parameter.present and not parameter.allowed.contains(parameter.default):
            problems.append(
                make_problem(
                    "optimizer",
                    f"default {name} {parameter.default} is outside its own allowed "
                    f"{parameter.allowed.describe()}",
                )
            )
    return problems


def _check_knn(spec: Model_pb2.Model) -> list[Problem]:
    problems: list[Problem] = []
    knn = spec.kNearestNeighborsClassifier
    desc = spec.description
    training = {feature.name: feature for feature in desc.trainingInput}
    label = desc.predictedFeatureName
    if not label or label not in training:
        problems.append(
            make_problem(
                "knn-training-input",
                f"the k-nearest-neighbours classifier has no training input for its label "
                f"'{label or '?'}'",
            )
        )
    inputs = [feature.name for feature in desc.input]
    missing = [name for name in inputs if name not in training]
    if missing:
        problems.append(
            make_problem(
                "knn-training-input",
                f"input '{missing[0]}' is not among the training inputs",
            )
        )
    index = knn.nearestNeighborsIndex
    dims = index.numberOfDimensions
    if dims <= 0:
        problems.append(make_problem("knn-index", "the index has no number of dimensions"))
    bad = [i for i, sample in enumerate(index.floatSamples) if len(sample.vector) != dims]
    if dims > 0 and bad:
        problems.append(
            make_problem("knn-index", f"sample {bad[0]} does not have {dims} dimensions")
        )
    labels = class_labels(spec)
    if len(labels) != len(index.floatSamples):
        problems.append(
            make_problem(
                "knn-index",
                f"{len(index.floatSamples)} samples but {len(labels)} labels",
            )
        )
    if knn.numberOfNeighbors.defaultValue < 1:
        problems.append(make_problem("knn-index", "the number of neighbours must be at least 1"))
    return problems
