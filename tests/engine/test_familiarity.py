"""The "neither" signal: a model's familiarity output and threshold, and how predict
prints it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlupdated.engine.familiarity import OUTPUT, THRESHOLD_KEY, familiarity, familiarity_threshold
from mlupdated.engine.predictor import Prediction
from mlupdated.engine.report import format_result

from tests.helpers.updatable_specs import build_updatable_spec


def _spec(threshold: str | None, *, output: bool = True):
    spec = build_updatable_spec()
    if output:
        spec.description.output.add().name = OUTPUT
    if threshold is not None:
        spec.description.metadata.userDefined[THRESHOLD_KEY] = threshold
    return spec


def test_threshold_needs_the_key_and_the_output() -> None:
    assert familiarity_threshold(_spec("0.25")) == 0.25
    assert familiarity_threshold(_spec(None)) is None
    assert familiarity_threshold(_spec("0.25", output=False)) is None
    assert familiarity_threshold(_spec("low")) is None
    assert familiarity_threshold(_spec("nan")) is None


@pytest.mark.parametrize(("score", "neither"), [(0.1, True), (0.2, False), (0.5, False)])
def test_below_the_threshold_is_neither(score: float, neither: bool) -> None:
    signal = familiarity({OUTPUT: np.array([[[score]]], np.float32)}, 0.2)
    assert signal is not None and signal.neither is neither
    assert signal.score == pytest.approx(score)


def test_no_signal_without_output_or_threshold() -> None:
    assert familiarity({}, 0.2) is None
    assert familiarity({OUTPUT: np.array([0.3])}, None) is None
    assert familiarity({OUTPUT: np.array([np.nan])}, 0.2) is None


def test_predict_says_looks_like_neither_only_below_the_threshold() -> None:
    result = Prediction("rocket.png", "Dog", {"Cat": 0.02, "Dog": 0.98}, {})
    low = familiarity({OUTPUT: np.array([0.12])}, 0.19)
    high = familiarity({OUTPUT: np.array([0.4])}, 0.19)
    assert format_result(result, as_json=False, signal=low) == (
        "rocket.png: Dog (0.9800), looks like neither (familiarity 0.12 < 0.19)"
    )
    assert format_result(result, as_json=False, signal=high) == "rocket.png: Dog (0.9800)"
    assert format_result(result, as_json=False) == "rocket.png: Dog (0.9800)"
    record = json.loads(format_result(result, as_json=True, signal=low))
    assert record["neither"] is True and record["familiarity"] == pytest.approx(0.12)
    assert "familiarity" not in json.loads(format_result(result, as_json=True))
