"""Update parameters read from specs, and checks of overrides against their ranges/sets."""

from __future__ import annotations

import functools

import pytest
from helpers.updatable_specs import build_updatable_spec
from hypothesis import given, settings
from hypothesis import strategies as st
from mlupdated.coreml.params import PARAMETER_NAMES, check_override, update_parameters
from mlupdated.coreml.proto import Model_pb2
from mlupdated.errors import ParameterError


@pytest.fixture(scope="module")
def sgd():
    return update_parameters(
        build_updatable_spec(learning_rate=0.05, lr_range=(0.001, 0.5), momentum=0.9, seed=7)
    )


@pytest.fixture(scope="module")
def adam():
    return update_parameters(
        build_updatable_spec(optimizer="adam", beta1=0.8, beta2=0.99, eps=1e-7, shuffle=True)
    )


def test_sgd_parameters_read(sgd):
    assert sgd.optimizer == "sgd"
    assert sgd.learning_rate.default == pytest.approx(0.05)
    assert (sgd.learning_rate.allowed.minimum, sgd.learning_rate.allowed.maximum) == (0.001, 0.5)
    assert sgd.mini_batch_size.default == 4 and sgd.mini_batch_size.allowed.values == (2, 4, 8)
    assert sgd.momentum.default == pytest.approx(0.9) and sgd.momentum.present
    assert sgd.epochs.default == 3 and sgd.epochs.allowed.values == (1, 2, 3, 5, 10)
    assert sgd.shuffle.default is False and sgd.seed.default == 7
    assert not sgd.beta1.present and not sgd.applies("beta1") and sgd.applies("momentum")


def test_adam_parameters_read(adam):
    assert adam.optimizer == "adam"
    assert (adam.beta1.default, adam.beta2.default) == (pytest.approx(0.8), pytest.approx(0.99))
    assert adam.eps.default == pytest.approx(1e-7)
    assert adam.shuffle.default is True
    assert not adam.momentum.present and not adam.applies("momentum")


def test_defaults_and_resolve(sgd):
    defaults = sgd.defaults()
    assert set(defaults) == set(PARAMETER_NAMES)
    resolved = sgd.resolve({"epochs": 5, "learning_rate": 0.1, "mini_batch_size": None})
    assert resolved["epochs"] == 5 and resolved["learning_rate"] == 0.1
    assert resolved["mini_batch_size"] == 4


def test_messages_for_values_outside(sgd):
    with pytest.raises(ParameterError) as info:
        check_override("learning_rate", 5.0, sgd)
    assert str(info.value) == "learning rate 5.0 outside the model's allowed range [0.001, 0.5]"
    assert info.value.parameter == "learning_rate"
    with pytest.raises(ParameterError) as info:
        check_override("mini_batch_size", 7, sgd)
    assert str(info.value) == "mini-batch size 7 not in the model's allowed set {2, 4, 8}"
    with pytest.raises(ParameterError, match="epochs 4 not in the model's allowed set"):
        check_override("epochs", 4, sgd)


def test_range_edges_are_inclusive(sgd):
    assert check_override("learning_rate", 0.5, sgd) == 0.5
    assert check_override("learning_rate", 0.001, sgd) == 0.001
    with pytest.raises(ParameterError):
        check_override("learning_rate", 0.5000001, sgd)


def test_types_are_checked_and_normalised(sgd):
    assert check_override("epochs", 2.0, sgd) == 2 and isinstance(
        check_override("epochs", 2.0, sgd), int
    )
    assert check_override("shuffle", True, sgd) is True
    assert check_override("seed", 123, sgd) == 123
    for name, value, match in [
        ("epochs", 2.5, "whole number"),
        ("shuffle", "yes", "true or false"),
        ("learning_rate", True, "a number"),
        ("learning_rate", float("nan"), "finite"),
        ("seed", -1, "not negative"),
        ("momentum", -0.5, "not negative"),
        ("nonsense", 1, "unknown training parameter"),
    ]:
        with pytest.raises(ParameterError, match=match) as info:
            check_override(name, value, sgd)
        assert info.value.parameter == name


def test_optimizer_specific_parameters(sgd, adam):
    with pytest.raises(ParameterError, match="beta1 does not apply to the model's sgd optimizer"):
        check_override("beta1", 0.9, sgd)
    with pytest.raises(ParameterError, match="momentum does not apply"):
        check_override("momentum", 0.5, adam)
    assert check_override("beta2", 0.5, adam) == 0.5
    with pytest.raises(ParameterError, match="beta2 1.5"):
        check_override("beta2", 1.5, adam)


def test_missing_values_cannot_resolve():
    spec = build_updatable_spec()
    spec.neuralNetworkClassifier.updateParams.ClearField("epochs")
    params = update_parameters(spec)
    assert not params.epochs.present and params.epochs.default is None
    with pytest.raises(ParameterError, match="states no epochs"):
        params.resolve()
    assert params.resolve({"epochs": 2})["epochs"] == 2


def test_parameters_of_a_non_updatable_or_pipeline_model():
    plain = Model_pb2.Model(specificationVersion=4)
    plain.neuralNetwork.SetInParent()
    assert update_parameters(plain).optimizer is None
    stage = build_updatable_spec(optimizer="adam")
    pipe = Model_pb2.Model(specificationVersion=4, isUpdatable=True)
    pipe.pipelineClassifier.pipeline.models.add().CopyFrom(stage)
    assert update_parameters(pipe).optimizer == "adam"


@functools.cache
def _narrow_lr_params():
    return update_parameters(build_updatable_spec(lr_range=(0.001, 0.5)))


@settings(max_examples=80, deadline=None)
@given(value=st.floats(-10, 10, allow_nan=False))
def test_learning_rate_accepted_exactly_inside_the_range(value):
    params = _narrow_lr_params()
    if 0.001 <= value <= 0.5:
        assert check_override("learning_rate", value, params) == value
    else:
        with pytest.raises(ParameterError, match="learning rate"):
            check_override("learning_rate", value, params)
