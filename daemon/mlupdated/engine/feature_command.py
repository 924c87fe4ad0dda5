"""Models whose inputs are not (only) image files: :func:`mlupdated.predict` and the
lines of ``mlupdated predict --input/--features``.

Each example is predicted on its own (examples of one model may have different
shapes where the model allows it). Text output is one line per example: the label and
its probability for a classifier, else ``name=value`` for each output. ``--json``
prints one object per example with every output feature (arrays as nested lists, or
as ``.npy`` files under ``--out-dir``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..coreml.features import (
    batch_of_one,
    check_example,
    to_python,
)
from .predictor import Prediction, Predictor
from .report import PROBABILITY_DIGITS, jsonable
from .threads import one_shot_threads

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def predict_example(predictor: Predictor, example: Mapping[str, Any]) -> Prediction:
    """Predict one checked example (see ``features.check_example``); multi-array
    outputs come in the shape the model declares (a network's ``[C, 1, 1]`` blob for
    a declared ``[C]`` output is given as ``[C]``)."""
    (prediction,) = predictor.predict_features(batch_of_one(predictor.spec, example))
    for feature in predictor.spec.description.output:
        value = prediction.outputs.get(feature.name)
        if not isinstance(value, np.ndarray) or feature.type.WhichOneof("Type") != (
            "multiArrayType"
        ):
            continue
        shape = tuple(int(d) for d in feature.type.multiArrayType.shape)
        if shape and value.shape != shape and value.size == int(np.prod(shape)):
            prediction.outputs[feature.name] = value.reshape(shape)
    return prediction


def outputs_of(prediction: Prediction) -> dict[str, Any]:
    """Every output feature of a prediction, as plain Python (arrays stay arrays)."""
    return {name: to_python(value) for name, value in prediction.outputs.items()}


def finite_outputs(outputs: Mapping[str, Any]) -> bool:
    """False when a numeric output holds NaN or an infinity."""
    for value in outputs.values():
        if isinstance(value, dict):
            value = list(value.values())
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if not np.isfinite(array).all():
            return False
    return True


def _text_value(value: Any) -> str:
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        shown = ", ".join(f"{v:.{PROBABILITY_DIGITS}g}" for v in flat[:8])
        more = ", ..." if flat.size > 8 else ""
        return f"[{shown}{more}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _write_arrays(outputs: dict[str, Any], out_dir: Path, where: str | None) -> dict[str, Any]:
    folder = out_dir if where is None else out_dir / where
    folder.mkdir(parents=True, exist_ok=True)
    written = dict(outputs)
    for name, value in outputs.items():
        if isinstance(value, np.ndarray) and value.ndim > 0:
            path = folder / f"{_UNSAFE.sub('_', name) or 'output'}.npy"
            np.save(path, value, allow_pickle=False)
            written[name] = str(path)
    return written


def format_prediction(
    prediction: Prediction,
    *,
    as_json: bool,
    where: str | None,
    out_dir: Path | None,
) -> str:
    """One output line for one example (``where``: its line in a ``--features`` file)."""
    outputs = outputs_of(prediction)
    if as_json:
        if out_dir is not None:
            outputs = _write_arrays(outputs, out_dir, where)
        record: dict[str, Any] = {}
        if where is not None:
            record["line"] = int(where)
        if prediction.label is not None:
            record["label"] = to_python(prediction.label)
            record["probabilities"] = jsonable(to_python(prediction.probabilities))
        record["outputs"] = jsonable(outputs)
        return json.dumps(record, ensure_ascii=False)
    prefix = f"line {where}: " if where is not None else ""
    if prediction.label is not None:
        p = prediction.probabilities.get(prediction.label)
        shown = f" ({p:.{PROBABILITY_DIGITS}f})" if p is not None else ""
        return f"{prefix}{prediction.label}{shown}"
    return prefix + ", ".join(f"{name}={_text_value(v)}" for name, v in outputs.items())


def failure_line(error: str, *, as_json: bool, where: str | None) -> str:
    """The line for an example that could not be predicted."""
    if as_json:
        record: dict[str, Any] = {"line": int(where)} if where is not None else {}
        record["error"] = error
        return json.dumps(record, ensure_ascii=False)
    return f"line {where}: error: {error}" if where is not None else f"error: {error}"


def predict(
    model_path: str | os.PathLike[str],
    features: Mapping[str, Any],
    *,
    resize: str = "scaleFill",
) -> dict[str, Any]:
    """Run a Core ML model on one example; return every output feature.

    ``features`` maps each input name to its value: a number (double), an ``int``
    (int64), a ``str``, a ``dict`` (dictionary input), a nested list or NumPy array
    (multi-array, in the input's shape), or an image file path (or a float32
    ``[C, H, W]`` array of 0..255 values). The result maps each output name to a
    ``float``, ``int``, ``str``, ``dict`` (class probabilities) or NumPy array.
    Raises ``FeatureError`` (a subclass of ``MlupdatedError``) in one line for an
    unknown, missing or ill-typed input, and the model errors of ``Predictor`` for a
    model that cannot run.
    """
    predictor = Predictor.from_path(model_path, threads=one_shot_threads())
    example = check_example(predictor.spec, features, resize=resize)
    return outputs_of(predict_example(predictor, example))
