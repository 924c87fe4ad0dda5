"""The gate: non-finite weights, the held-aside split, and the accuracy verdict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from mlupdated.coreml.weights import decode_weights, replace_weights
from mlupdated.service.update.gate import (
    MAX_EVAL_EXAMPLES,
    GateRules,
    Metrics,
    choose_holdout,
    judge,
    nonfinite_layers,
    sample_for_evaluation,
)

from tests.helpers.updatable_specs import build_updatable_spec, layer_by_name


@dataclass(frozen=True)
class _C:
    id: int
    sha256: str


def _items(n: int) -> list[_C]:
    return [_C(i, f"{i:064x}") for i in range(n)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("field", ["weights", "bias"])
def test_nonfinite_updatable_weights_are_found(bad: float, field: str) -> None:
    spec = build_updatable_spec()
    assert nonfinite_layers(spec) == []
    params = getattr(layer_by_name(spec, "dense_6").innerProduct, field)
    values = decode_weights(params, count=None)
    values[1] = bad
    replace_weights(params, values)
    assert nonfinite_layers(spec) == ["dense_6"]


def test_frozen_layers_are_not_checked() -> None:
    # Frozen weights never change in an update; a NaN there came with the input model.
    spec = build_updatable_spec()
    params = layer_by_name(spec, "conv_1").convolution.weights
    values = decode_weights(params, count=None)
    values[0] = np.nan
    replace_weights(params, values)
    assert nonfinite_layers(spec) == []


def test_holdout_only_once_there_are_enough() -> None:
    rules = GateRules(holdout_fraction=0.2, min_holdout=5)
    train, held = choose_holdout(_items(10), rules=rules, seed=1)
    assert (len(train), held) == (10, [])
    train, held = choose_holdout(_items(25), rules=rules, seed=1)
    assert (len(train), len(held)) == (20, 5)
    assert {c.id for c in train}.isdisjoint({c.id for c in held})
    assert {c.id for c in train} | {c.id for c in held} == set(range(25))


def test_holdout_is_reproducible_and_order_free() -> None:
    rules = GateRules(holdout_fraction=0.3, min_holdout=1)
    items = _items(30)
    _, a = choose_holdout(items, rules=rules, seed=7)
    _, b = choose_holdout(list(reversed(items)), rules=rules, seed=7)
    assert sorted(c.id for c in a) == sorted(c.id for c in b)


def test_no_holdout_when_disabled_or_nothing_left_to_train() -> None:
    assert choose_holdout(_items(50), rules=GateRules(enabled=False), seed=0)[1] == []
    everything = GateRules(holdout_fraction=1.0, min_holdout=1)
    assert choose_holdout(_items(5), rules=everything, seed=0)[1] == []


def test_evaluation_sample_is_bounded() -> None:
    assert len(sample_for_evaluation(_items(3), seed=0)) == 3
    assert len(sample_for_evaluation(_items(MAX_EVAL_EXAMPLES + 50), seed=0)) == MAX_EVAL_EXAMPLES


def test_verdicts() -> None:
    rules = GateRules(tolerance=0.05)
    current = Metrics(count=20, accuracy=0.8, cross_entropy=0.5)
    assert judge(current, Metrics(20, 0.76, 0.6), rules=rules).passed
    worse = judge(current, Metrics(20, 0.7, 0.4), rules=rules)
    assert not worse.passed
    assert "below" in worse.reason
    assert worse.to_dict()["candidate"]["accuracy"] == 0.7
    empty = Metrics(0, None, None)
    assert judge(empty, empty, rules=rules).passed
    assert judge(current, Metrics(20, 0.1, 9.0), rules=GateRules(enabled=False)).passed


def test_metrics_round_trip() -> None:
    m = Metrics(count=3, accuracy=2 / 3, cross_entropy=0.25, failures=1)
    assert Metrics.from_dict(m.to_dict()) == m
