"""Describe a Core ML spec for people and programs: ``mlupdated inspect``.

:func:`describe` gathers what a user needs to know about a model into a plain,
JSON-serialisable dict: its kind, inputs and outputs with their types, labels,
layers, what is updatable and how (loss, optimizer, parameters and their allowed
values), the updatable-model rules it breaks, and a command line that calls it.
:func:`format_description` renders that dict as text.
"""

from __future__ import annotations

import os
from typing import Any

from .features import example_command, input_hint
from .image_tensor import COLOR_SPACE_NAMES
from .params import LABELS, update_parameters
from .proto import FeatureTypes_pb2, Model_pb2
from .spec import (
    KNN_KIND,
    NEURAL_NETWORK_KINDS,
    class_labels,
    model_kind,
    pipeline_stages,
    updatable_stage,
)
from .validate import validate_updatable

_ARRAY_DTYPES = {
    value.number: value.name
    for value in FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.DESCRIPTOR.values
}


def describe(spec: Model_pb2.Model, *, path: str | os.PathLike[str] | None = None) -> dict:
    """A JSON-serialisable description of ``spec`` (recursing into pipeline stages)."""
    desc = spec.description
    meta = desc.metadata
    info: dict[str, Any] = {
        "path": str(path) if path is not None else None,
        "kind": model_kind(spec),
        "spec_version": spec.specificationVersion,
        "updatable": bool(spec.isUpdatable),
        "metadata": {
            "short_description": meta.shortDescription,
            "author": meta.author,
            "license": meta.license,
            "version": meta.versionString,
            "user_defined": dict(sorted(meta.userDefined.items())),
        },
        "inputs": [feature_info(f) for f in desc.input],
        "outputs": [feature_info(f) for f in desc.output],
        "training_inputs": [feature_info(f) for f in desc.trainingInput],
        "predicted_feature_name": desc.predictedFeatureName or None,
        "predicted_probabilities_name": desc.predictedProbabilitiesName or None,
        "class_labels": class_labels(spec),
        "layers": [],
        "preprocessing": [],
        "updatable_layers": [],
        "loss_layers": [],
        "optimizer": None,
        "epochs": None,
        "shuffle": None,
        "seed": None,
        "problems": [],
        "stages": [],
    }
    if info["kind"] in NEURAL_NETWORK_KINDS:
        _describe_network(spec, info)
    if info["kind"] == KNN_KIND:
        info["knn"] = _knn_info(spec)
    summary = _classic_summary(spec)
    if summary is not None:
        info["summary"] = summary
    stage = updatable_stage(spec)
    if stage is not None and stage is not spec and stage.WhichOneof("Type") in NEURAL_NETWORK_KINDS:
        info["updatable_layers"] = [
            layer.name
            for layer in getattr(stage, stage.WhichOneof("Type")).layers
            if layer.isUpdatable
        ]
        info["loss_layers"] = _loss_layers(getattr(stage, stage.WhichOneof("Type")))
    _describe_training(spec, info)
    info["problems"] = [p.as_dict() for p in _problems(spec)]
    info["stages"] = [describe(s) for s in pipeline_stages(spec)]
    for child in info["stages"]:
        del child["path"]
        del child["call"]
    info["call"] = {
        "command": example_command(spec, path),
        "notes": [hint for f in desc.input if (hint := input_hint(f)) is not None],
    }
    return info


def feature_info(feature: Model_pb2.FeatureDescription) -> dict[str, Any]:
    """Name, description and type of one input or output feature."""
    info: dict[str, Any] = {"name": feature.name}
    if feature.shortDescription:
        info["description"] = feature.shortDescription
    ftype = feature.type
    which = ftype.WhichOneof("Type")
    if which == "imageType":
        image = ftype.imageType
        info.update(
            type="image",
            width=image.width,
            height=image.height,
            color_space=COLOR_SPACE_NAMES.get(image.colorSpace, str(image.colorSpace)),
        )
        flex = image.WhichOneof("SizeFlexibility")
        if flex == "enumeratedSizes":
            info["sizes"] = [[s.width, s.height] for s in image.enumeratedSizes.sizes]
        elif flex == "imageSizeRange":
            rng = image.imageSizeRange
            info["size_range"] = {
                "width": [rng.widthRange.lowerBound, rng.widthRange.upperBound],
                "height": [rng.heightRange.lowerBound, rng.heightRange.upperBound],
            }
    elif which == "multiArrayType":
        array = ftype.multiArrayType
        info.update(
            type="multiarray",
            shape=[int(d) for d in array.shape],
            dtype=_ARRAY_DTYPES.get(array.dataType, str(array.dataType)),
        )
        flex = array.WhichOneof("ShapeFlexibility")
        if flex == "enumeratedShapes":
            info["shapes"] = [[int(d) for d in s.shape] for s in array.enumeratedShapes.shapes]
        elif flex == "shapeRange":
            info["shape_range"] = [
                [r.lowerBound, r.upperBound] for r in array.shapeRange.sizeRanges
            ]
    elif which == "dictionaryType":
        key = ftype.dictionaryType.WhichOneof("KeyType")
        info.update(type="dictionary", key="string" if key == "stringKeyType" else "int64")
    elif which is not None:
        info["type"] = which.removesuffix("Type")
    else:
        info["type"] = None
    info["optional"] = bool(ftype.isOptional)
    return info


def _layer_info(layer: object) -> dict[str, Any]:
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    info: dict[str, Any] = {
        "name": layer.name,  # type: ignore[attr-defined]
        "type": kind,
        "inputs": list(layer.input),  # type: ignore[attr-defined]
        "outputs": list(layer.output),  # type: ignore[attr-defined]
        "updatable": bool(layer.isUpdatable),  # type: ignore[attr-defined]
    }
    if kind == "activation":
        info["activation"] = layer.activation.WhichOneof("NonlinearityType")  # type: ignore[attr-defined]
    return info


def _loss_layers(nn: object) -> list[dict[str, Any]]:
    losses = []
    for loss in nn.updateParams.lossLayers:  # type: ignore[attr-defined]
        which = loss.WhichOneof("LossLayerType")
        body = getattr(loss, which) if which else None
        losses.append(
            {
                "name": loss.name,
                "type": which.removesuffix("LossLayer") if which else None,
                "input": body.input if body is not None else None,
                "target": body.target if body is not None else None,
            }
        )
    return losses


def _describe_network(spec: Model_pb2.Model, info: dict[str, Any]) -> None:
    nn = getattr(spec, spec.WhichOneof("Type"))
    info["layers"] = [_layer_info(layer) for layer in nn.layers]
    info["updatable_layers"] = [layer.name for layer in nn.layers if layer.isUpdatable]
    info["loss_layers"] = _loss_layers(nn)
    for entry in nn.preprocessing:
        which = entry.WhichOneof("preprocessor")
        item: dict[str, Any] = {"feature": entry.featureName or None, "type": which}
        if which == "scaler":
            scaler = entry.scaler
            item.update(
                channel_scale=scaler.channelScale,
                red_bias=scaler.redBias,
                green_bias=scaler.greenBias,
                blue_bias=scaler.blueBias,
                gray_bias=scaler.grayBias,
            )
        elif which == "meanImage":
            item["values"] = len(entry.meanImage.meanImage)
        info["preprocessing"].append(item)


def _knn_info(spec: Model_pb2.Model) -> dict[str, Any]:
    knn = spec.kNearestNeighborsClassifier
    index = knn.nearestNeighborsIndex
    return {
        "neighbors": int(knn.numberOfNeighbors.defaultValue),
        "samples": len(index.floatSamples),
        "dimensions": int(index.numberOfDimensions),
        "index": index.WhichOneof("IndexType"),
        "weighting": knn.WhichOneof("WeightingScheme"),
    }


def _enum(message: Any, field: str) -> str:
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    return enum.values_by_number[value].name if value in enum.values_by_number else str(value)


def _classic_summary(spec: Model_pb2.Model) -> str | None:
    """One line on what a classic model holds (GLM, trees, SVM, transformers)."""
    kind = spec.WhichOneof("Type")
    if kind in ("glmClassifier", "glmRegressor"):
        glm = getattr(spec, kind)
        rows = len(glm.weights)
        width = len(glm.weights[0].value) if rows else 0
        transform = _enum(glm, "postEvaluationTransform")
        text = f"linear model: {rows} weight row(s) of {width}, {transform}"
        if kind == "glmClassifier":
            text += f", {_enum(glm, 'classEncoding')}"
        return text
    if kind in ("treeEnsembleClassifier", "treeEnsembleRegressor"):
        model = getattr(spec, kind)
        nodes = model.treeEnsemble.nodes
        trees = len({node.treeId for node in nodes})
        return (
            f"tree ensemble: {trees} tree(s), {len(nodes)} nodes, "
            f"{model.treeEnsemble.numPredictionDimensions} prediction dimension(s), "
            f"{_enum(model, 'postEvaluationTransform')}"
        )
    if kind in ("supportVectorClassifier", "supportVectorRegressor"):
        svm = getattr(spec, kind)
        which = svm.WhichOneof("supportVectors")
        vectors = getattr(svm, which).vectors if which else []
        kernel = (svm.kernel.WhichOneof("kernel") or "linearKernel").removesuffix("Kernel")
        return f"support vector machine: {kernel} kernel, {len(vectors)} support vectors"
    return None


def _describe_training(spec: Model_pb2.Model, info: dict[str, Any]) -> None:
    params = update_parameters(spec)

    def entry(name: str) -> dict[str, Any] | None:
        parameter = params.get(name)
        if not parameter.present:
            return None
        return {"default": parameter.default, **parameter.allowed.as_dict()}

    if params.optimizer is not None:
        optimizer: dict[str, Any] = {"name": params.optimizer}
        for name in ("learning_rate", "mini_batch_size", "momentum", "beta1", "beta2", "eps"):
            if params.applies(name) and entry(name) is not None:
                optimizer[name] = entry(name)
        info["optimizer"] = optimizer
    info["epochs"] = entry("epochs")
    shuffle = params.get("shuffle")
    info["shuffle"] = shuffle.default if shuffle.present else None
    info["seed"] = entry("seed")


def _problems(spec: Model_pb2.Model):
    problems = validate_updatable(spec)
    if _claims_updatable(spec):
        return problems
    # A model that does not try to be updatable gets one line, not a list of every
    # missing piece.
    return [p for p in problems if p.rule == "is-updatable"][:1]


def _claims_updatable(spec: Model_pb2.Model) -> bool:
    if spec.isUpdatable:
        return True
    if any(_claims_updatable(stage) for stage in pipeline_stages(spec)):
        return True
    kind = spec.WhichOneof("Type")
    if kind in NEURAL_NETWORK_KINDS:
        nn = getattr(spec, kind)
        return nn.HasField("updateParams") or any(layer.isUpdatable for layer in nn.layers)
    return False


def format_description(info: dict[str, Any], *, indent: str = "") -> str:
    """Render a :func:`describe` dict as readable text (one fact per line)."""
    lines: list[str] = []
    add = lines.append
    if info.get("path"):
        add(f"Model: {info['path']}")
    updatable = "updatable" if info["updatable"] else "not updatable"
    add(f"Kind: {info['kind']} (specification version {info['spec_version']}), {updatable}")
    meta = info["metadata"]
    for key, label in (
        ("short_description", "Description"),
        ("author", "Author"),
        ("license", "License"),
        ("version", "Version"),
    ):
        if meta.get(key):
            add(f"{label}: {meta[key]}")
    for key, value in meta.get("user_defined", {}).items():
        add(f"Metadata {key}: {_shortened(str(value))}")
    add("Inputs:")
    lines.extend(f"  {_feature_text(f)}" for f in info["inputs"])
    add("Outputs:")
    lines.extend(f"  {_feature_text(f)}" for f in info["outputs"])
    if info["class_labels"]:
        labels = ", ".join(str(label) for label in info["class_labels"])
        add(f"Class labels ({len(info['class_labels'])}): {labels}")
    if info["predicted_feature_name"]:
        add(
            f"Predicted label: {info['predicted_feature_name']}; "
            f"probabilities: {info['predicted_probabilities_name'] or '-'}"
        )
    for item in info["preprocessing"]:
        details = ", ".join(
            f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in item.items()
            if k not in ("feature", "type")
        )
        add(f"Preprocessing of {item['feature'] or 'the input'}: {item['type']} ({details})")
    if info["layers"]:
        add(f"Layers ({len(info['layers'])}):")
        for layer in info["layers"]:
            kind = layer["type"] + (f" {layer['activation']}" if layer.get("activation") else "")
            mark = "  [updatable]" if layer["updatable"] else ""
            add(
                f"  {layer['name']}: {kind}  {', '.join(layer['inputs'])} -> "
                f"{', '.join(layer['outputs'])}{mark}"
            )
    if info.get("summary"):
        add(f"Holds: {info['summary']}")
    knn = info.get("knn")
    if knn is not None:
        add(
            f"Nearest neighbours: k={knn['neighbors']}, {knn['samples']} samples of "
            f"{knn['dimensions']} dimensions ({knn['index']}, {knn['weighting']})"
        )
    _training_lines(info, add)
    if info["problems"]:
        add(f"Update problems ({len(info['problems'])}):")
        lines.extend(f"  {p['message']}" for p in info["problems"])
    elif info["updatable"]:
        add("Update problems: none (the model passes Core ML's rules for updatable models)")
    call = info.get("call")
    if call is not None:
        add(f"Call: {call['command']}")
        lines.extend(f"  {note}" for note in call["notes"])
    for index, stage in enumerate(info["stages"]):
        add(f"Pipeline stage {index}:")
        add(format_description(stage, indent="  "))
    return "\n".join(indent + line if line else line for line in "\n".join(lines).split("\n"))


def _feature_text(feature: dict[str, Any]) -> str:
    kind = feature.get("type")
    if kind == "image":
        text = f"image {feature['width']}x{feature['height']} {feature['color_space']}"
        if "sizes" in feature:
            text += " (sizes " + ", ".join(f"{w}x{h}" for w, h in feature["sizes"]) + ")"
        if "size_range" in feature:
            rng = feature["size_range"]
            text += f" (width {rng['width'][0]}..{rng['width'][1]}, "
            text += f"height {rng['height'][0]}..{rng['height'][1]})"
    elif kind == "multiarray":
        text = f"multiarray {tuple(feature['shape'])} {feature['dtype']}"
    elif kind == "dictionary":
        text = f"dictionary ({feature['key']} keys)"
    else:
        text = str(kind)
    optional = " (optional)" if feature.get("optional") else ""
    return f"{feature['name']}: {text}{optional}"


def _allowed_text(entry: dict[str, Any]) -> str:
    if "set" in entry:
        return f"{entry['default']} (allowed {{{', '.join(str(v) for v in entry['set'])}}})"
    if "min" in entry:
        return f"{entry['default']} (allowed [{entry['min']}, {entry['max']}])"
    return f"{entry['default']}"


def _training_lines(info: dict[str, Any], add) -> None:
    if info["updatable_layers"]:
        add(f"Updatable layers: {', '.join(info['updatable_layers'])}")
    for loss in info["loss_layers"]:
        add(
            f"Loss: {loss['name']}: {loss['type']} of {loss['input']} "
            f"against target {loss['target']}"
        )
    optimizer = info["optimizer"]
    if optimizer is not None:
        parts = [f"{LABELS[k]} {_allowed_text(v)}" for k, v in optimizer.items() if k != "name"]
        add(f"Optimizer: {optimizer['name'].upper()}: {'; '.join(parts)}")
    if info["epochs"] is not None:
        add(f"Epochs: {_allowed_text(info['epochs'])}")
    if info["shuffle"] is not None:
        add(f"Shuffle: {'yes' if info['shuffle'] else 'no'}")
    if info["seed"] is not None:
        add(f"Seed: {_allowed_text(info['seed'])}")
    if info["training_inputs"]:
        add("Training inputs: " + ", ".join(_feature_text(f) for f in info["training_inputs"]))


# A metadata value longer than this is cut in the text form (--json keeps it whole).
METADATA_SHOWN = 160


def _shortened(value: str) -> str:
    if len(value) <= METADATA_SHOWN:
        return value
    return f"{value[:METADATA_SHOWN]}… ({len(value)} characters; --json shows all)"
