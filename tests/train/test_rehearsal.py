"""The rehearsal set a model carries (``mlupdated.rehearsal``): what an update trains on
beside the corrections, how much a correction weighs, and the one-line refusals of a
malformed entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlupdated.coreml.spec import neural_network
from mlupdated.errors import UnsupportedModelError
from mlupdated.train.data import CutValues, Example
from mlupdated.train.rehearsal import METADATA_KEY, rehearsal_set
from mlupdated.train.split import split_network
from mlupdated.train.task import run_update, training_rows

from tests.helpers.updatable_specs import build_updatable_spec

ROWS = 6
WEIGHT = 3


def _with_rehearsal(*, layer: str = "memory", labels=None, weight=WEIGHT, reads=None):
    """The small test spec plus a frozen ``memory`` innerProduct whose rows are
    rehearsal examples at the cut blob, and the metadata naming it."""
    spec = build_updatable_spec(conv_prefix=False, input_shape=(3, 4, 4), image_input=False)
    (cut,) = split_network(spec).cut_blobs
    width = 3 * 4 * 4
    rows = np.random.default_rng(5).standard_normal((ROWS, width)).astype(np.float32)
    added = neural_network(spec).layers.add()
    added.name = "memory"
    added.input.append(reads or cut)
    added.output.append("memory_out")
    params = added.innerProduct
    params.inputChannels, params.outputChannels = width, ROWS
    params.weights.floatValue.extend(rows.reshape(-1).tolist())
    entry = {"layer": layer, "labels": labels or ["Cat", "Dog"] * (ROWS // 2)}
    if weight is not None:
        entry["correction_weight"] = weight
    spec.description.metadata.userDefined[METADATA_KEY] = json.dumps(entry)
    return spec, rows


def _corrections(count: int = 2) -> list[Example]:
    rng = np.random.default_rng(9)
    return [Example(rng.uniform(0, 1, (3, 4, 4)).astype(np.float32), "Dog") for _ in range(count)]


def test_rehearsal_set_reads_the_rows_and_labels() -> None:
    spec, rows = _with_rehearsal()
    found = rehearsal_set(spec, split_network(spec))
    assert found is not None and found.correction_weight == WEIGHT
    assert [e.label for e in found.examples] == ["Cat", "Dog"] * (ROWS // 2)
    (blob,) = split_network(spec).cut_blobs
    got = np.stack([e.source.blobs[blob] for e in found.examples])
    np.testing.assert_array_equal(got, rows)
    assert all(isinstance(e.source, CutValues) for e in found.examples)


def test_a_model_without_the_key_has_none() -> None:
    spec = build_updatable_spec(conv_prefix=False, input_shape=(3, 4, 4), image_input=False)
    assert rehearsal_set(spec, split_network(spec)) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"layer": "nowhere"}, "no layer named 'nowhere'"),
        ({"layer": "dense_5"}, "must be a frozen innerProduct"),
        ({"labels": ["Cat"]}, "1 labels for 6 rows"),
        ({"weight": 0}, "correction_weight 0 is outside"),
        ({"reads": "dense_5_out"}, "which the updatable layers do not read"),
    ],
)
def test_a_malformed_entry_is_refused_in_one_line(change: dict, expected: str) -> None:
    spec, _ = _with_rehearsal(**change)
    with pytest.raises(UnsupportedModelError) as info:
        rehearsal_set(spec, split_network(spec))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_entry_that_is_not_json_is_refused() -> None:
    spec, _ = _with_rehearsal()
    spec.description.metadata.userDefined[METADATA_KEY] = "{not json"
    with pytest.raises(UnsupportedModelError, match="mlupdated.rehearsal is not valid"):
        rehearsal_set(spec, split_network(spec))


def test_update_trains_on_the_rows_and_the_weighted_corrections() -> None:
    spec, rows = _with_rehearsal()
    corrections = _corrections()
    result = run_update(spec, corrections, cache=None)
    assert result.examples_used == len(corrections)
    assert result.rehearsal_used == ROWS
    # One epoch goes over every row once and each correction WEIGHT times.
    batches = [e for e in result.events if e.event == "miniBatchEnd" and e.epoch_index == 0]
    batch = int(result.parameters_used["mini_batch_size"])
    assert len(batches) == -(-(ROWS + WEIGHT * len(corrections)) // batch)
    assert training_rows(spec, len(corrections)) == ROWS + WEIGHT * len(corrections)
    assert training_rows(spec, len(corrections), rehearse=False) == len(corrections)


def test_the_same_update_written_out_by_hand_gives_the_same_weights() -> None:
    """Rehearsal is nothing but those examples: the rows (as cut values) and each
    correction repeated, given to a model that carries no rehearsal set."""
    spec, _ = _with_rehearsal()
    corrections = _corrections()
    with_set = run_update(spec, corrections, cache=None)
    plain = type(spec)()
    plain.CopyFrom(spec)
    del plain.description.metadata.userDefined[METADATA_KEY]
    found = rehearsal_set(spec, split_network(spec))
    assert found is not None
    by_hand = [*found.examples, *(e for e in corrections for _ in range(WEIGHT))]
    written = run_update(plain, by_hand, cache=None)
    for a, b in zip(
        neural_network(with_set.spec).layers, neural_network(written.spec).layers, strict=True
    ):
        if a.isUpdatable:
            np.testing.assert_allclose(
                a.innerProduct.weights.floatValue, b.innerProduct.weights.floatValue, atol=1e-6
            )


def test_without_rehearsal_only_the_corrections_train() -> None:
    spec, _ = _with_rehearsal()
    result = run_update(spec, _corrections(), cache=None, rehearse=False)
    assert result.rehearsal_used == 0 and result.examples_used == 2
    batch = int(result.parameters_used["mini_batch_size"])
    batches = [e for e in result.events if e.event == "miniBatchEnd" and e.epoch_index == 0]
    assert len(batches) == -(-2 // batch)
