"""Inputs of every type for ``predict``: checked against the model's description.

A model's inputs come from the command line (``--input NAME=VALUE`` or
``NAME=FILE.npy``), from a file of JSON lines (``--features``, one example per line)
or from Python (:func:`mlupdated.predict`). Each value is checked against the input's
declared type (double, int64, string, multi-array with its shape, dictionary, image)
and refused in one line naming the input when it does not fit; unknown and missing
names are refused the same way. :func:`example_command` writes a command line that
calls a model, for ``mlupdated inspect``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import FeatureError, MlupdatedError
from .image_tensor import _allowed_shapes, _in_range, multiarray_shape
from .sequences import as_sequence, network_inputs, sequence_forms, sequence_inputs

FEATURE_KINDS = {
    "doubleType": "a number (double)",
    "int64Type": "an integer (int64)",
    "stringType": "a string",
    "multiArrayType": "an array",
    "dictionaryType": "a dictionary",
    "imageType": "an image file",
}


def _kind(feature: Any) -> str | None:
    return feature.type.WhichOneof("Type")


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, np.ndarray) else f"an array of shape {value.shape}"
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong(feature: Any, value: Any) -> FeatureError:
    expected = FEATURE_KINDS.get(_kind(feature) or "", str(_kind(feature)))
    return FeatureError(f"input '{feature.name}' must be {expected}, got {_show(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _scalar(value: Any) -> Any:
    """A one-element array (or list) as its element; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.reshape(()).item()
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], list | dict):
        return value[0]
    return value


def _check_shape(feature: Any, array: np.ndarray, *, sequence: bool = False) -> np.ndarray:
    array_type = feature.type.multiArrayType
    flexible = array_type.WhichOneof("ShapeFlexibility")
    if not len(array_type.shape) and flexible is None:
        return array  # no declared shape: any
    default = multiarray_shape(feature)
    if array.shape == default:
        return array
    allowed = _allowed_shapes(feature)
    if allowed is not None and array.shape in allowed:
        return array
    if flexible == "shapeRange" and _in_range(array.shape, feature):
        return array
    # Leading or trailing axes of size 1 (a [4] vector for a [1, 4] input) fit too.
    squeezed = tuple(d for d in array.shape if d != 1)
    if flexible is None and squeezed == tuple(d for d in default if d != 1):
        return array.reshape(default)
    if sequence:
        steps = as_sequence(feature.name, default, array)
        if steps is not None:
            return steps
    if sequence and array.ndim > len(default):
        # More axes than declared: most likely a sequence in a form Core ML does not take.
        raise FeatureError(
            f"input '{feature.name}' has shape {tuple(array.shape)}, the model expects "
            f"{default} or a sequence {sequence_forms(default)}"
        )
    raise FeatureError(
        f"input '{feature.name}' has shape {tuple(array.shape)}, the model expects {default}"
    )


def convert_value(
    feature: Any, value: Any, *, resize: str = "scaleFill", sequence: bool = False
) -> Any:
    """One example's value for ``feature``, checked: a float, an int, a str, a dict, a
    NumPy array of the input's shape, or an image's float32 ``[C, H, W]`` tensor.
    ``sequence``: the input may also be fed as a sequence (see ``coreml.sequences``),
    which gives a ``[Seq, *shape]`` array."""
    kind = _kind(feature)
    if kind == "imageType":
        if isinstance(value, np.ndarray):
            return value.astype(np.float32)
        if not isinstance(value, str | os.PathLike):
            raise _wrong(feature, value)
        from .images import load_tensor

        return load_tensor(str(value), feature.type.imageType, resize=resize)
    if kind == "doubleType":
        value = _scalar(value)
        if not _is_number(value):
            raise _wrong(feature, value)
        return float(value)
    if kind == "int64Type":
        value = _scalar(value)
        if _is_number(value) and float(value).is_integer():
            return int(value)
        raise _wrong(feature, value)
    if kind == "stringType":
        value = _scalar(value)
        if not isinstance(value, str):
            raise _wrong(feature, value)
        return value
    if kind == "dictionaryType":
        if not isinstance(value, Mapping):
            raise _wrong(feature, value)
        int_keys = feature.type.dictionaryType.WhichOneof("KeyType") == "int64KeyType"
        out: dict[Any, float] = {}
        for key, item in value.items():
            if int_keys:
                try:
                    key = int(key)
                except (TypeError, ValueError):
                    raise FeatureError(
                        f"input '{feature.name}' has int64 keys, got key {_show(key)}"
                    ) from None
            else:
                key = str(key)
            if not _is_number(item):
                raise FeatureError(
                    f"input '{feature.name}': the value of key {_show(key)} must be a number, "
                    f"got {_show(item)}"
                )
            out[key] = float(item)
        return out
    if kind == "multiArrayType":
        if isinstance(value, str | bytes | Mapping) or value is None:
            raise _wrong(feature, value)
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise FeatureError(
                f"input '{feature.name}' must be an array of numbers, got {_show(value)}"
            ) from None
        return _check_shape(feature, array, sequence=sequence)
    raise FeatureError(f"input '{feature.name}' has a type mlupdated cannot take ({kind})")


def parse_text(feature: Any, text: str) -> Any:
    """The raw value of ``--input NAME=TEXT`` for ``feature`` (before
    :func:`convert_value`): a ``.npy`` file's array, a path, a number, a string, or
    parsed JSON."""
    kind = _kind(feature)
    if text.lower().endswith(".npy") and kind != "stringType":
        try:
            return np.load(text, allow_pickle=False)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise FeatureError(f"input '{feature.name}': cannot read {text}: {reason}") from None
    if kind in ("imageType", "stringType"):
        return text
    if kind in ("doubleType", "int64Type", "multiArrayType", "dictionaryType"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if kind == "doubleType":
                raise _wrong(feature, text) from None
            if kind == "int64Type":
                raise _wrong(feature, text) from None
            what = "a JSON array or a .npy file" if kind == "multiArrayType" else "a JSON object"
            raise FeatureError(
                f"input '{feature.name}' must be {what}, got {_show(text)}"
            ) from None
    return text


def _inputs(spec: Any) -> dict[str, Any]:
    return {f.name: f for f in spec.description.input}


def _names(spec: Any) -> str:
    return ", ".join(f.name for f in spec.description.input) or "none"


def check_example(
    spec: Any, raw: Mapping[str, Any], *, resize: str = "scaleFill"
) -> dict[str, Any]:
    """Every input of one example, converted (see :func:`convert_value`); refuses unknown
    names and missing inputs (an optional double left out is NaN; an optional
    multi-array that only neural networks read stays out, and the engine's network stage
    feeds zeros for it, as Core ML does for a recurrent layer's state input that is not
    given; an imputer's optional string, int64 or dictionary None, the value it
    imputes)."""
    inputs = _inputs(spec)
    sequences = sequence_inputs(spec)
    for name in raw:
        if name not in inputs:
            raise FeatureError(f"unknown input '{name}' (the model's inputs: {_names(spec)})")
    example: dict[str, Any] = {}
    for name, feature in inputs.items():
        if name not in raw:
            if feature.type.isOptional and _kind(feature) == "doubleType":
                example[name] = float("nan")
                continue
            if (
                feature.type.isOptional
                and spec.WhichOneof("Type") == "imputer"
                and _kind(feature) in ("stringType", "int64Type", "dictionaryType")
            ):
                example[name] = None  # the imputer's missing value
                continue
            if (
                feature.type.isOptional
                and _kind(feature) == "multiArrayType"
                and name in network_inputs(spec)
            ):
                continue  # the network stage feeds zeros of the shape it runs
            expected = FEATURE_KINDS.get(_kind(feature) or "", "a value")
            raise FeatureError(f"input '{name}' is missing (it takes {expected})")
        example[name] = convert_value(feature, raw[name], resize=resize, sequence=name in sequences)
    return example


def example_from_pairs(
    spec: Any, pairs: Sequence[str], *, resize: str = "scaleFill"
) -> dict[str, Any]:
    """The example given by ``--input NAME=VALUE`` options."""
    inputs = _inputs(spec)
    raw: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise FeatureError(f"--input {pair!r}: expected NAME=VALUE")
        if name in raw:
            raise FeatureError(f"input '{name}' is given twice")
        if name not in inputs:
            raise FeatureError(f"unknown input '{name}' (the model's inputs: {_names(spec)})")
        raw[name] = parse_text(inputs[name], text)
    return check_example(spec, raw, resize=resize)


def examples_from_lines(
    spec: Any, lines: Iterable[str], *, resize: str = "scaleFill"
) -> list[tuple[int, dict[str, Any] | FeatureError]]:
    """(line number, example or the reason it cannot be used) for each non-blank line
    of a ``--features`` file; a string for a ``.npy`` array input names the file."""
    inputs = _inputs(spec)
    out: list[tuple[int, dict[str, Any] | FeatureError]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FeatureError(f"not a JSON object ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise FeatureError(f"not a JSON object (got {type(raw).__name__})")
            for name, value in list(raw.items()):
                feature = inputs.get(name)
                if (
                    feature is not None
                    and _kind(feature) == "multiArrayType"
                    and isinstance(value, str)
                ):
                    raw[name] = parse_text(feature, value)
            out.append((number, check_example(spec, raw, resize=resize)))
        except MlupdatedError as exc:
            error = exc if isinstance(exc, FeatureError) else FeatureError(str(exc))
            out.append((number, error))
    return out


def batch_of_one(spec: Any, example: Mapping[str, Any]) -> dict[str, Any]:
    """One example as the batch-first features a ``Predictor`` takes."""
    batch: dict[str, Any] = {}
    for feature in spec.description.input:
        if feature.name not in example:  # an optional input the engine fills itself
            continue
        value = example[feature.name]
        kind = _kind(feature)
        if value is None:  # an optional input left out (see check_example)
            batch[feature.name] = np.asarray([None], dtype=object)
        elif kind == "dictionaryType":
            batch[feature.name] = [value]
        elif kind == "stringType":
            batch[feature.name] = np.asarray([value], dtype=object)
        elif kind == "int64Type":
            batch[feature.name] = np.asarray([value], dtype=np.int64)
        else:
            batch[feature.name] = np.asarray(
                value, dtype=np.float64 if kind != "imageType" else np.float32
            )[None]
    return batch


def to_python(value: Any) -> Any:
    """An output value as plain Python (NumPy scalars unwrapped; arrays stay arrays)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [to_python(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {to_python(k): to_python(v) for k, v in value.items()}
    return value


# --- the example command line (``inspect``) ----------------------------------------------


def _sample(feature: Any) -> str:
    kind = _kind(feature)
    if kind == "doubleType":
        return "1.0"
    if kind == "int64Type":
        return "1"
    if kind == "stringType":
        return "text"
    if kind == "dictionaryType":
        int_keys = feature.type.dictionaryType.WhichOneof("KeyType") == "int64KeyType"
        return json.dumps({"0" if int_keys else "key": 1.0}, separators=(",", ":"))
    if kind == "imageType":
        return "photo.jpg"
    if kind == "multiArrayType":
        try:
            shape = multiarray_shape(feature)
        except MlupdatedError:
            return f"{feature.name}.npy"
        if int(np.prod(shape)) <= 8:
            return json.dumps(np.zeros(shape).tolist(), separators=(",", ":"))
        return f"{feature.name}.npy"
    return "VALUE"


def example_command(spec: Any, model_path: str | os.PathLike[str] | None) -> str:
    """A ready-to-paste ``mlupdated predict`` command line for the model's inputs."""
    model = shlex.quote(str(model_path)) if model_path is not None else "MODEL.mlmodel"
    inputs = list(spec.description.input)
    if len(inputs) == 1 and _kind(inputs[0]) == "imageType":
        return f"mlupdated predict --model {model} photo.jpg"
    parts = [f"mlupdated predict --model {model}"]
    for feature in inputs:
        parts.append(f"--input {shlex.quote(f'{feature.name}={_sample(feature)}')}")
    return " ".join(parts)


def input_hint(feature: Any) -> str | None:
    """What a ``.npy`` sample in :func:`example_command` must hold, if one is used."""
    if _kind(feature) != "multiArrayType" or _sample(feature) != f"{feature.name}.npy":
        return None
    try:
        return f"{feature.name}.npy: an array of shape {multiarray_shape(feature)}"
    except MlupdatedError:
        return f"{feature.name}.npy: an array"


__all__ = [
    "FEATURE_KINDS",
    "batch_of_one",
    "check_example",
    "convert_value",
    "example_command",
    "example_from_pairs",
    "examples_from_lines",
    "input_hint",
    "parse_text",
    "to_python",
]
