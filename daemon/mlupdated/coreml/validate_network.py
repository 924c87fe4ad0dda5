"""Core ML's updatable-model rules about the network itself: which layers may be
updatable, the loss layer's input and target, and the backpropagation path between
the loss and each updatable layer.
"""

from __future__ import annotations

from collections import Counter

from .problem import Problem, make_problem
from .proto import Model_pb2
from .rules import (
    BACKPROP_ACTIVATIONS,
    BACKPROP_LAYER_TYPES,
    BACKPROP_POOLING,
    CROSS_ENTROPY_INPUT_LAYER,
    CROSS_ENTROPY_LOSS,
    UPDATABLE_LAYER_TYPES,
    loss_io,
)

_ALLOWED_TEXT = (
    "convolution, innerProduct, flatten, pooling (max/average), batchnorm, "
    "activation ReLU/sigmoid/tanh and softmax"
)


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


def check_network(spec: Model_pb2.Model) -> list[Problem]:
    """Structural problems of a neural network spec (blobs, names, shapes), one per finding."""
    problems: list[Problem] = []
    nn = getattr(spec, spec.WhichOneof("Type"))
    layers = list(nn.layers)
    up = nn.updateParams
    loss_layers = list(up.lossLayers)

    counts = Counter([layer.name for layer in layers] + [loss.name for loss in loss_layers])
    for name, count in counts.items():
        if count > 1:
            problems.append(
                make_problem(
                    "unique-layer-names", f"layer name '{name}' is used {count} times", name
                )
            )

    updatable = [layer for layer in layers if layer.isUpdatable]
    if not updatable:
        problems.append(make_problem("has-updatable-layer", "no layer is marked updatable"))
    for layer in updatable:
        problems.extend(_check_updatable_layer(layer))
    problems.extend(_check_no_float16(layers))

    if len(loss_layers) != 1:
        problems.append(
            make_problem(
                "one-loss-layer",
                f"the model has {len(loss_layers)} loss layers; exactly one is required",
            )
        )
    producers = _producers(layers)
    if loss_layers:
        loss = loss_layers[0]
        problems.extend(_check_loss(spec, loss, producers))
        loss_input = loss_io(loss)[1]
        problems.extend(_check_backprop(layers, producers, loss.name, loss_input, updatable))
    return problems


def _check_updatable_layer(layer: object) -> list[Problem]:
    name = layer.name  # type: ignore[attr-defined]
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    if kind not in UPDATABLE_LAYER_TYPES or _layer_type(layer) == "convolution (deconvolution)":
        return [
            make_problem(
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
            make_problem(
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
                make_problem(
                    "updatable-weights-float32",
                    f"updatable layer '{name}' stores its {field} as float16 or quantized; "
                    "updatable weights must be float32",
                    name,
                )
            )
    return problems


def _check_no_float16(layers: list[object]) -> list[Problem]:
    # Core ML compiles a network holding any float16 weight to a full float16 model,
    # which it cannot update (coremltools' make_updatable refuses such networks for
    # that reason): frozen layers included, not only the updatable ones.
    halves = [layer.name for layer in layers if _holds_float16(layer)]  # type: ignore[attr-defined]
    if not halves:
        return []
    more = f" (and {len(halves) - 1} more)" if len(halves) > 1 else ""
    return [
        make_problem(
            "no-float16-weights",
            f"layer '{halves[0]}'{more} stores weights as float16; Core ML runs such a "
            "network entirely in float16 and cannot update it (store them as float32)",
            halves[0],
        )
    ]


def _holds_float16(message: object) -> bool:
    for field, value in message.ListFields():  # type: ignore[attr-defined]
        if field.message_type is None:
            continue
        # A repeated field comes as a container of messages, a singular one as a message.
        for item in [value] if hasattr(value, "ListFields") else value:
            if field.message_type.name == "WeightParams":
                if len(item.float16Value):
                    return True
            elif _holds_float16(item):
                return True
    return False


def _producers(layers: list[object]) -> dict[str, int]:
    """Blob name → index of the (last) layer that writes it."""
    producers: dict[str, int] = {}
    for index, layer in enumerate(layers):
        for blob in layer.output:  # type: ignore[attr-defined]
            producers[blob] = index
    return producers


def _check_loss(spec: Model_pb2.Model, loss: object, producers: dict[str, int]) -> list[Problem]:
    problems: list[Problem] = []
    name = loss.name  # type: ignore[attr-defined]
    which, loss_input, target = loss_io(loss)
    nn = getattr(spec, spec.WhichOneof("Type"))
    if which is None:
        return [make_problem("one-loss-layer", f"loss layer '{name}' has no loss type", name)]
    if which == CROSS_ENTROPY_LOSS:
        index = producers.get(loss_input)
        producer = nn.layers[index] if index is not None else None
        if producer is None or producer.WhichOneof("layer") != CROSS_ENTROPY_INPUT_LAYER:
            what = (
                f"the output of layer '{producer.name}' of type '{_layer_type(producer)}'"
                if producer is not None
                else "not the output of any layer"
            )
            problems.append(
                make_problem(
                    "loss-input-softmax",
                    f"categorical cross-entropy loss '{name}' takes '{loss_input}', which is "
                    f"{what}; it must be the output of a softmax layer",
                    name,
                )
            )
    elif loss_input not in producers:
        problems.append(
            make_problem(
                "loss-input-softmax",
                f"loss '{name}' takes '{loss_input}', which no layer produces",
                name,
            )
        )
    training_inputs = {feature.name for feature in spec.description.trainingInput}
    if target in producers:
        problems.append(
            make_problem(
                "loss-target-is-input",
                f"loss '{name}' target '{target}' is produced by layer "
                f"'{nn.layers[producers[target]].name}'; it must be a training input",
                name,
            )
        )
    elif target not in training_inputs and not _classifier_label_target(spec, loss_input):
        problems.append(
            make_problem(
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
                make_problem(
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
                make_problem(
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
