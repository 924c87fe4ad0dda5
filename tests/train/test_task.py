"""The update task against PyTorch: whole trajectories, the written spec, a second run."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import neural_network
from mlupdated.errors import DivergedError, NotUpdatableError, TrainingDataError
from mlupdated.train.cache import FeatureCache
from mlupdated.train.data import Example
from mlupdated.train.task import (
    UpdateCancelledError,
    UpdateEvent,
    epoch_order,
    epoch_permutation,
    run_update,
)
from specs import with_middle_conv
from torch_reference import TorchTwin, spec_weights, train_like_update, trained_weights

TOL = 1e-4
N_EXAMPLES = 10  # with mini-batches of 4: the last one is partial (2)

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", learning_rate=0.05),
    "sgd-momentum": dict(optimizer="sgd", learning_rate=0.05, momentum=0.9),
    "adam": dict(optimizer="adam", learning_rate=0.01, beta1=0.85, beta2=0.99, eps=1e-3),
}


def make_data(seed: int, labels=("Cat", "Dog"), shape=(3, 8, 8)):
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(0, 255, (N_EXAMPLES, *shape)).astype(np.float32)
    names = [labels[int(i)] for i in rng.integers(0, len(labels), N_EXAMPLES)]
    return inputs, names


def losses_of(events: list[UpdateEvent]) -> list[float]:
    return [e.loss_value for e in events if e.event == "miniBatchEnd"]


def assert_matches(result, twin, torch_losses):
    ours = losses_of(result.events)
    assert len(ours) == len(torch_losses)
    np.testing.assert_allclose(ours, torch_losses, atol=TOL, rtol=0)
    expected = trained_weights(twin)
    got = spec_weights(result.spec)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=TOL, rtol=0, err_msg=key)


@pytest.mark.parametrize("updatable_conv", [False, True], ids=["dense", "conv"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_trajectory_matches_pytorch(tmp_path, opt, shuffle, updatable_conv):
    spec = build_updatable_spec(
        updatable_conv=updatable_conv, shuffle=shuffle, seed=7, epochs=3, **OPTIMIZERS[opt]
    )
    inputs, labels = make_data(1)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    result = run_update(spec, examples, cache=FeatureCache(tmp_path))
    twin = TorchTwin(spec)
    torch_losses = train_like_update(twin, inputs, labels)
    assert_matches(result, twin, torch_losses)
    assert result.examples_used == N_EXAMPLES
    # A second update of the written model continues the same trajectory.
    again = run_update(result.spec, examples, cache=FeatureCache(tmp_path))
    assert_matches(again, twin, train_like_update(twin, inputs, labels))


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_trajectory_with_an_updatable_convolution_in_the_middle(tmp_path, opt):
    spec = with_middle_conv(shuffle=True, seed=3, epochs=3, **OPTIMIZERS[opt])
    inputs, labels = make_data(14)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    cache = FeatureCache(tmp_path)
    result = run_update(spec, examples, cache=cache)
    twin = TorchTwin(spec)
    assert_matches(result, twin, train_like_update(twin, inputs, labels))
    assert cache.computed == N_EXAMPLES


def test_should_stop_cancels_between_mini_batches(tmp_path):
    spec = build_updatable_spec()
    inputs, labels = make_data(15)
    seen: list[UpdateEvent] = []
    with pytest.raises(UpdateCancelledError):
        run_update(
            spec,
            [Example(x, y) for x, y in zip(inputs, labels, strict=True)],
            progress=seen.append,
            cache=FeatureCache(tmp_path),
            should_stop=lambda: len(seen) >= 3,
        )
    assert [e.event for e in seen] == ["trainingBegin", "miniBatchEnd", "miniBatchEnd"]


def test_overrides_are_used(tmp_path):
    spec = build_updatable_spec(epochs=3, learning_rate=0.01)
    inputs, labels = make_data(2)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    overrides = {
        "epochs": 5,
        "learning_rate": 0.2,
        "mini_batch_size": 8,
        "momentum": 0.5,
        "shuffle": True,
        "seed": 3,
    }
    result = run_update(spec, examples, overrides=overrides, cache=FeatureCache(tmp_path))
    twin = TorchTwin(spec)
    assert_matches(result, twin, train_like_update(twin, inputs, labels, overrides))
    assert len(losses_of(result.events)) == 5 * 2
    assert result.parameters_used["learning_rate"] == 0.2


def test_int64_labels(tmp_path):
    spec = build_updatable_spec(classes=(3, 17, 40), learning_rate=0.1)
    inputs, labels = make_data(3, labels=(3, 17, 40))
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    result = run_update(spec, examples, cache=FeatureCache(tmp_path))
    twin = TorchTwin(spec)
    assert_matches(result, twin, train_like_update(twin, inputs, labels))


def test_mean_squared_error_model(tmp_path):
    spec = build_updatable_spec(loss="mse", learning_rate=0.1)
    inputs, _ = make_data(4)
    rng = np.random.default_rng(5)
    targets = list(rng.dirichlet(np.ones(2), N_EXAMPLES).astype(np.float32))
    examples = [Example(x, t) for x, t in zip(inputs, targets, strict=True)]
    result = run_update(spec, examples, cache=FeatureCache(tmp_path))
    twin = TorchTwin(spec)
    assert_matches(result, twin, train_like_update(twin, inputs, targets))


def _cleared(spec: Model_pb2.Model) -> Model_pb2.Model:
    copy = Model_pb2.Model()
    copy.CopyFrom(spec)
    for layer in neural_network(copy).layers:
        if layer.isUpdatable:
            params = getattr(layer, layer.WhichOneof("layer"))
            del params.weights.floatValue[:]
            del params.bias.floatValue[:]
    return copy


def test_written_spec_differs_only_in_updatable_weights(tmp_path):
    spec = build_updatable_spec(updatable_conv=True, learning_rate=0.1)
    inputs, labels = make_data(6)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    original = spec.SerializeToString(deterministic=True)
    result = run_update(spec, examples, cache=FeatureCache(tmp_path))
    assert spec.SerializeToString(deterministic=True) == original, "input spec was modified"
    new, old = _cleared(result.spec), _cleared(spec)
    # Field by field, so a failure names the field that changed.
    for fd, value in old.ListFields():
        assert getattr(new, fd.name) == value, fd.name
    assert new == old
    before, after = spec_weights(spec), spec_weights(result.spec)
    for key in before:
        assert before[key].shape == after[key].shape
        assert not np.allclose(before[key], after[key]), f"{key} did not change"
    for layer in neural_network(result.spec).layers:
        if layer.isUpdatable:
            params = getattr(layer, layer.WhichOneof("layer"))
            assert params.weights.isUpdatable and params.bias.isUpdatable


def test_second_update_does_no_backbone_work(tmp_path):
    spec = build_updatable_spec()
    inputs, labels = make_data(7)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    cache = FeatureCache(tmp_path)
    first = run_update(spec, examples, cache=cache)
    assert cache.computed == N_EXAMPLES
    second_cache = FeatureCache(tmp_path)  # a new run, the same directory
    run_update(first.spec, examples, cache=second_cache)
    assert second_cache.computed == 0
    assert second_cache.hits == N_EXAMPLES


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    spec = build_updatable_spec()
    inputs, labels = make_data(8)
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    reference = run_update(spec, examples, cache=FeatureCache(tmp_path))
    entries = sorted(tmp_path.rglob("*.npz"))
    assert len(entries) == N_EXAMPLES
    entries[0].write_bytes(b"not a zip")
    entries[1].write_bytes(entries[1].read_bytes()[:20])
    cache = FeatureCache(tmp_path)
    again = run_update(spec, examples, cache=cache)
    assert cache.computed == 2
    assert losses_of(again.events) == losses_of(reference.events)


def test_events_follow_the_progress_handler_order(tmp_path):
    spec = build_updatable_spec(epochs=2)
    inputs, labels = make_data(9)
    seen: list[UpdateEvent] = []
    result = run_update(
        spec,
        [Example(x, y) for x, y in zip(inputs, labels, strict=True)],
        progress=seen.append,
        cache=FeatureCache(tmp_path),
    )
    assert seen == result.events
    kinds = [(e.event, e.epoch_index, e.mini_batch_index) for e in seen]
    expected = [("trainingBegin", None, None)]
    for epoch in range(2):
        expected += [("miniBatchEnd", epoch, i) for i in range(3)]
        expected += [("epochEnd", epoch, None)]
    assert kinds == expected
    batch_losses = losses_of(seen)[:3]
    epoch_loss = seen[4].loss_value
    assert epoch_loss == pytest.approx(
        (batch_losses[0] * 4 + batch_losses[1] * 4 + batch_losses[2] * 2) / 10
    )
    assert seen[1].as_dict() == {
        "event": "miniBatchEnd",
        "epochIndex": 0,
        "miniBatchIndex": 0,
        "lossValue": batch_losses[0],
    }


def test_permutation_is_seeded_and_changes_per_epoch():
    a = epoch_permutation(20, seed=5, epoch=0)
    assert sorted(a) == list(range(20))
    assert np.array_equal(a, epoch_permutation(20, seed=5, epoch=0))
    assert not np.array_equal(a, epoch_permutation(20, seed=5, epoch=1))
    assert not np.array_equal(a, epoch_permutation(20, seed=6, epoch=0))
    assert list(epoch_order(5, shuffle=False, seed=5, epoch=3)) == [0, 1, 2, 3, 4]


def test_not_updatable_model_is_refused_before_any_work(tmp_path):
    spec = build_updatable_spec()
    spec.isUpdatable = False
    cache = FeatureCache(tmp_path)
    inputs, labels = make_data(10)
    with pytest.raises(NotUpdatableError):
        run_update(spec, [Example(inputs[0], labels[0])], cache=cache)
    assert cache.computed == 0


def test_unknown_label_is_refused(tmp_path):
    spec = build_updatable_spec()
    inputs, _ = make_data(11)
    with pytest.raises(TrainingDataError, match="'Horse' is not one of the model's labels"):
        run_update(spec, [Example(inputs[0], "Horse")], cache=FeatureCache(tmp_path))


def test_divergence_is_reported(tmp_path):
    spec = build_updatable_spec(learning_rate=1e30, lr_range=(0.0, 1e38))
    inputs, labels = make_data(12)
    inputs *= 1e3
    with pytest.raises(DivergedError):
        run_update(
            spec,
            [Example(x, y) for x, y in zip(inputs, labels, strict=True)],
            overrides={"epochs": 10},
            cache=FeatureCache(tmp_path),
        )


def test_unreadable_examples_are_skipped_and_counted(tmp_path):
    spec = build_updatable_spec()
    inputs, labels = make_data(13)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    examples.insert(3, Example(bad, "Cat"))
    result = run_update(spec, examples, cache=FeatureCache(tmp_path / "cache"))
    assert result.examples_used == N_EXAMPLES
    assert [s.source for s in result.examples_skipped] == [str(bad)]
    assert result.examples_skipped[0].reason
