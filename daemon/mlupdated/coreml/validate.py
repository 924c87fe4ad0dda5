"""Core ML's rules for updatable models, checked before any training work.

Each rule has a stable id (``spec-version``, ``backprop-path``, ...) used in messages,
in ``mlupdated inspect`` and in tests. :func:`validate_updatable` lists every broken
rule; :func:`check_updatable` raises ``NotUpdatableError`` with the first. A message
starts with the rule id and names the layer it concerns.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from ..errors import NotUpdatableError
from .params import update_parameters
from .proto import Model_pb2
from .spec import (
    KNN_KIND,
    NEURAL_NETWORK_KINDS,
    PIPELINE_KINDS,
    class_labels,
    pipeline_stages,
    updatable_stage,
)

MIN_UPDATABLE_SPEC_VERSION = 4
UPDATABLE_LAYER_TYPES = ("convolution", "innerProduct")
# Layer types Core ML can backpropagate through, between the loss and an updatable layer.
BACKPROP_LAYER_TYPES = (
    "convolution",
    "innerProduct",
    "flatten",
    "pooling",
    "batchnorm",
    "activation",
    "softmax",
)
BACKPROP_ACTIVATIONS = ("ReLU", "sigmoid", "tanh")
BACKPROP_POOLING = ("MAX", "AVERAGE")
_ALLOWED_TEXT = (
    "convolution, innerProduct, flatten, pooling (max/average), batchnorm, "
    "activation ReLU/sigmoid/tanh and softmax"
)


@dataclass(frozen=True)
class Problem:
    """One broken rule: its id, a one-line message starting with it, the layer if any."""

    rule: str
    message: str
    layer: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-friendly form: ``{"rule", "layer", "message"}``."""
        return {"rule": self.rule, "layer": self.layer, "message": self.message}


def _problem(rule: str, text: str, layer: str | None = None) -> Problem:
    return Problem(rule, f"{rule}: {text}", layer)


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
                _problem(
                    "pipeline-stage",
                    f"stage {marked[0]} is marked updatable; only the last stage of a "
                    "pipeline may be",
                )
            )
        stage = updatable_stage(spec)
        if stage is None:
            if spec.isUpdatable:
                problems.append(_problem("is-updatable", "no pipeline stage is marked updatable"))
            return problems
        _check_header(stage, problems, where="updatable stage")
    else:
        stage = spec
    stage_kind = stage.WhichOneof("Type")
    if stage_kind in NEURAL_NETWORK_KINDS:
        problems.extend(_check_network(stage))
    elif stage_kind == KNN_KIND:
        problems.extend(_check_knn(stage))
    else:
        problems.append(
            _problem(
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
            _problem(
                "spec-version",
                f"{where} has specification version {spec.specificationVersion}; updatable "
                f"models need {MIN_UPDATABLE_SPEC_VERSION} or later",
            )
        )
    if not spec.isUpdatable:
        problems.append(_problem("is-updatable", f"{where} is not marked updatable (isUpdatable)"))


def _layer_type(layer: object) -> str:
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    if kind == "activation":
        return f"activation {layer.activation.WhichOneof('NonlinearityType')}"  # type: ignore[attr-defined]
    if kind == "pooling":
        pooling = layer.pooling  # type: ignore[attr-defined]
        return f"pooling {pooling.PoolingType.Name(pooling.type)}"
    if kind == "convolution" and layer.convolution.isDeconvolution:  # type: ignore[attr-defined]
        return "convolution (deconvolution)"
    return str(kind)


def _allowed_on_path(layer: object) -> bool:
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    if kind not in BACKPROP_LAYER_TYPES:
        return False
    if kind == "activation":
        return layer.activation.WhichOneof("NonlinearityType") in BACKPROP_ACTIVATIONS  # type: ignore[attr-defined]
    if kind == "pooling":
        pooling = layer.pooling  # type: ignore[attr-defined]
        return pooling.PoolingType.Name(pooling.type) in BACKPROP_POOLING
    if kind == "convolution":
        return not layer.convolution.isDeconvolution  # type: ignore[attr-defined]
    return True


def _check_network(spec: Model_pb2.Model) -> list[Problem]:
    problems: list[Problem] = []
    nn = getattr(spec, spec.WhichOneof("Type"))
    layers = list(nn.layers)
    up = nn.updateParams
    loss_layers = list(up.lossLayers)

    counts = Counter([layer.name for layer in layers] + [loss.name for loss in loss_layers])
    for name, count in counts.items():
        if count > 1:
            problems.append(
                _problem("unique-layer-names", f"layer name '{name}' is used {count} times", name)
            )

    updatable = [layer for layer in layers if layer.isUpdatable]
    if not updatable:
        problems.append(_problem("has-updatable-layer", "no layer is marked updatable"))
    for layer in updatable:
        problems.extend(_check_updatable_layer(layer))

    if len(loss_layers) != 1:
        problems.append(
            _problem(
                "one-loss-layer",
                f"the model has {len(loss_layers)} loss layers; exactly one is required",
            )
        )
    producers = _producers(layers)
    if loss_layers:
        loss = loss_layers[0]
        problems.extend(_check_loss(spec, loss, producers))
        loss_input = _loss_io(loss)[1]
        problems.extend(_check_backprop(layers, producers, loss.name, loss_input, updatable))
    problems.extend(_check_parameters(spec, up))
    return problems


def _check_updatable_layer(layer: object) -> list[Problem]:
    name = layer.name  # type: ignore[attr-defined]
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    if kind not in UPDATABLE_LAYER_TYPES or _layer_type(layer) == "convolution (deconvolution)":
        return [
            _problem(
                "updatable-layer-type",
                f"layer '{name}' of type '{_layer_type(layer)}' is marked updatable; only "
                "convolution and innerProduct layers can be",
                name,
            )
        ]
    body = getattr(layer, kind)
    missing = []
    if not body.weights.isUpdatable:
        missing.append("weights")
    if body.hasBias and not body.bias.isUpdatable:
        missing.append("bias")
    problems = []
    if missing:
        problems.append(
            _problem(
                "weights-and-bias-updatable",
                f"updatable layer '{name}' has {' and '.join(missing)} not marked updatable",
                name,
            )
        )
    for field in ("weights", "bias") if body.hasBias else ("weights",):
        params = getattr(body, field)
        if not len(params.floatValue) and (
            params.float16Value or params.rawValue or params.int8RawValue
        ):
            problems.append(
                _problem(
                    "updatable-weights-float32",
                    f"updatable layer '{name}' stores its {field} as float16 or quantized; "
                    "updatable weights must be float32",
                    name,
                )
            )
    return problems


def _producers(layers: list[object]) -> dict[str, int]:
    """Blob name → index of the (last) layer that writes it."""
    producers: dict[str, int] = {}
    for index, layer in enumerate(layers):
        for blob in layer.output:  # type: ignore[attr-defined]
            producers[blob] = index
    return producers


def _loss_io(loss: object) -> tuple[str | None, str, str]:
    which = loss.WhichOneof("LossLayerType")  # type: ignore[attr-defined]
    if which is None:
        return None, "", ""
    body = getattr(loss, which)
    return which, body.input, body.target


def _check_loss(spec: Model_pb2.Model, loss: object, producers: dict[str, int]) -> list[Problem]:
    problems: list[Problem] = []
    name = loss.name  # type: ignore[attr-defined]
    which, loss_input, target = _loss_io(loss)
    nn = getattr(spec, spec.WhichOneof("Type"))
    if which is None:
        return [_problem("one-loss-layer", f"loss layer '{name}' has no loss type", name)]
    if which == "categoricalCrossEntropyLossLayer":
        index = producers.get(loss_input)
        producer = nn.layers[index] if index is not None else None
        if producer is None or producer.WhichOneof("layer") != "softmax":
            what = (
                f"the output of layer '{producer.name}' of type '{_layer_type(producer)}'"
                if producer is not None
                else "not the output of any layer"
            )
            problems.append(
                _problem(
                    "loss-input-softmax",
                    f"categorical cross-entropy loss '{name}' takes '{loss_input}', which is "
                    f"{what}; it must be the output of a softmax layer",
                    name,
                )
            )
    elif loss_input not in producers:
        problems.append(
            _problem(
                "loss-input-softmax",
                f"loss '{name}' takes '{loss_input}', which no layer produces",
                name,
            )
        )
    training_inputs = {feature.name for feature in spec.description.trainingInput}
    if target in producers:
        problems.append(
            _problem(
                "loss-target-is-input",
                f"loss '{name}' target '{target}' is produced by layer "
                f"'{nn.layers[producers[target]].name}'; it must be a training input",
                name,
            )
        )
    elif target not in training_inputs and not _classifier_label_target(spec, loss_input):
        problems.append(
            _problem(
                "loss-target-is-input",
                f"loss '{name}' target '{target}' is not among the model's training inputs "
                f"({', '.join(sorted(training_inputs)) or 'none'})",
                name,
            )
        )
    return problems


def _classifier_label_target(spec: Model_pb2.Model, loss_input: str) -> bool:
    # A classifier trained on its own probabilities takes the true class label as the
    # target (coremltools names it after the predicted feature); that is a training input.
    desc = spec.description
    training_inputs = {feature.name for feature in desc.trainingInput}
    return (
        spec.WhichOneof("Type") == "neuralNetworkClassifier"
        and loss_input == desc.predictedProbabilitiesName
        and desc.predictedFeatureName in training_inputs
    )


def _check_backprop(
    layers: list[object],
    producers: dict[str, int],
    loss_name: str,
    loss_input: str,
    updatable: list[object],
) -> list[Problem]:
    if loss_input not in producers:
        return []
    # Layers the loss depends on: walk back from the loss input through the layer
    # that wrote each input at that point of the (topologically ordered) network.
    feeders = _feeders(layers)
    ancestors: set[int] = set()
    stack = [producers[loss_input]]
    while stack:
        index = stack.pop()
        if index not in ancestors:
            ancestors.add(index)
            stack.extend(feeders[index])
    problems: list[Problem] = []
    reported: set[int] = set()
    for layer in updatable:
        start = next(i for i, candidate in enumerate(layers) if candidate is layer)
        name = layer.name  # type: ignore[attr-defined]
        if start not in ancestors:
            problems.append(
                _problem(
                    "backprop-path",
                    f"updatable layer '{name}' does not feed loss '{loss_name}'",
                    name,
                )
            )
            continue
        for index in sorted(_descendants(layers, start) & ancestors):
            between = layers[index]
            if index == start or index in reported or _allowed_on_path(between):
                continue
            reported.add(index)
            problems.append(
                _problem(
                    "backprop-path",
                    f"layer '{between.name}' of type '{_layer_type(between)}' lies between "  # type: ignore[attr-defined]
                    f"loss '{loss_name}' and updatable layer '{name}'; Core ML allows only "
                    f"{_ALLOWED_TEXT} there",
                    between.name,  # type: ignore[attr-defined]
                )
            )
    return problems


def _feeders(layers: list[object]) -> list[list[int]]:
    """For each layer, the indices of the earlier layers whose outputs it reads."""
    writer: dict[str, int] = {}
    feeders: list[list[int]] = []
    for index, layer in enumerate(layers):
        feeders.append([writer[b] for b in layer.input if b in writer])  # type: ignore[attr-defined]
        for blob in layer.output:  # type: ignore[attr-defined]
            writer[blob] = index
    return feeders


def _descendants(layers: list[object], start: int) -> set[int]:
    reached = {start}
    blobs = set(layers[start].output)  # type: ignore[attr-defined]
    for index in range(start + 1, len(layers)):
        if blobs & set(layers[index].input):  # type: ignore[attr-defined]
            reached.add(index)
            blobs |= set(layers[index].output)  # type: ignore[attr-defined]
    return reached


def _check_parameters(spec: Model_pb2.Model, up: object) -> list[Problem]:
    problems: list[Problem] = []
    which = up.optimizer.WhichOneof("OptimizerType") if up.HasField("optimizer") else None  # type: ignore[attr-defined]
    if which is None:
        problems.append(_problem("optimizer", "no optimizer (SGD or Adam) is set"))
    params = update_parameters(spec)
    checks = [("epochs", "epochs", "epochs")]
    if which is not None:
        checks += [
            ("mini-batch-size", "mini_batch_size", "mini-batch size"),
            ("learning-rate", "learning_rate", "learning rate"),
        ]
    for rule, name, label in checks:
        parameter = params.get(name)
        if not parameter.present:
            problems.append(_problem(rule, f"the model states no {label}"))
        elif not parameter.allowed.contains(parameter.default):
            problems.append(
                _problem(
                    rule,
                    f"default {label} {parameter.default} is outside its own allowed "
                    f"{parameter.allowed.describe()}",
                )
            )
        elif name in ("epochs", "mini_batch_size") and parameter.default < 1:
            problems.append(_problem(rule, f"default {label} {parameter.default} is below 1"))
    for name in ("momentum", "beta1", "beta2", "eps"):
        parameter = params.get(name)
        if parameter.present and not parameter.allowed.contains(parameter.default):
            problems.append(
                _problem(
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
            _problem(
                "knn-training-input",
                f"the k-nearest-neighbours classifier has no training input for its label "
                f"'{label or '?'}'",
            )
        )
    inputs = [feature.name for feature in desc.input]
    missing = [name for name in inputs if name not in training]
    if missing:
        problems.append(
            _problem(
                "knn-training-input",
                f"input '{missing[0]}' is not among the training inputs",
            )
        )
    index = knn.nearestNeighborsIndex
    dims = index.numberOfDimensions
    if dims <= 0:
        problems.append(_problem("knn-index", "the index has no number of dimensions"))
    bad = [i for i, sample in enumerate(index.floatSamples) if len(sample.vector) != dims]
    if dims > 0 and bad:
        problems.append(_problem("knn-index", f"sample {bad[0]} does not have {dims} dimensions"))
    labels = class_labels(spec)
    if len(labels) != len(index.floatSamples):
        problems.append(
            _problem(
                "knn-index",
                f"{len(index.floatSamples)} samples but {len(labels)} labels",
            )
        )
    if knn.numberOfNeighbors.defaultValue < 1:
        problems.append(_problem("knn-index", "the number of neighbours must be at least 1"))
    return problems
