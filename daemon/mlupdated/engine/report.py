"""How ``mlupdated predict`` prints a result: one line of text or of JSON per image."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .familiarity import Familiarity
from .predictor import Prediction, PredictionFailure

PROBABILITY_DIGITS = 4


def jsonable(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars made plain Python (for JSON)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _summary(value: Any) -> str:
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        shown = ", ".join(f"{v:.{PROBABILITY_DIGITS}g}" for v in flat[:8])
        more = ", ..." if flat.size > 8 else ""
        return f"[{shown}{more}]"
    return str(value)


def format_result(
    result: Prediction | PredictionFailure,
    *,
    as_json: bool,
    signal: Familiarity | None = None,
) -> str:
    """One output line for ``result``.

    Text: ``photo.jpg: Cat (0.9731)``, or ``photo.jpg: error: REASON``. JSON:
    ``{"path", "label", "probabilities"}`` or ``{"path", "error"}``; a model that is
    not a classifier reports ``outputs`` instead of a label. With a familiarity
    ``signal`` (see ``familiarity.py``), JSON adds ``familiarity`` and ``neither``, and
    text says ``looks like neither`` when the input is like none of the classes.
    """
    if isinstance(result, PredictionFailure):
        if as_json:
            return json.dumps({"path": result.path, "error": result.error})
        return f"{result.path}: error: {result.error}"
    if result.label is not None:
        if as_json:
            record = {
                "path": result.path,
                "label": result.label,
                "probabilities": jsonable(result.probabilities),
            }
            if signal is not None:
                record["familiarity"] = round(signal.score, PROBABILITY_DIGITS)
                record["neither"] = signal.neither
            return json.dumps(record)
        p = result.probabilities.get(result.label)
        shown = f" ({p:.{PROBABILITY_DIGITS}f})" if p is not None else ""
        if signal is not None and signal.neither:
            shown += f", looks like neither (familiarity {signal.score:.2f} < {signal.threshold:g})"
        return f"{result.path}: {result.label}{shown}"
    if as_json:
        return json.dumps({"path": result.path, "outputs": jsonable(result.outputs)})
    parts = ", ".join(f"{name}={_summary(v)}" for name, v in result.outputs.items())
    return f"{result.path}: {parts}"
