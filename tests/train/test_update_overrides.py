"""Parameter overrides: each one inside its allowed values is used, outside is refused."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.errors import ParameterError
from mlupdated.train.cache import FeatureCache
from mlupdated.train.data import Example
from mlupdated.train.task import run_update
from torch_reference import TorchTwin, spec_weights, train_like_update, trained_weights

SGD = dict(optimizer="sgd", momentum_range=(0.0, 0.5))
ADAM = dict(
    optimizer="adam",
    beta1_range=(0.5, 0.95),
    beta2_range=(0.9, 0.9999),
    eps_range=(1e-9, 1e-6),
    eps=1e-8,
)

# name → (spec options, a value inside, a value outside, words of the refusal)
CASES = {
    "epochs": (SGD, 2, 4, "epochs 4 not in the model's allowed set"),
    "learning_rate": (SGD, 0.3, 2.0, "learning rate 2.0 outside the model's allowed range"),
    "mini_batch_size": (SGD, 8, 3, "mini-batch size 3 not in the model's allowed set"),
    "momentum": (SGD, 0.4, 0.9, "momentum 0.9 outside the model's allowed range"),
    "beta1": (ADAM, 0.6, 0.99, "beta1 0.99 outside the model's allowed range"),
    "beta2": (ADAM, 0.95, 0.5, "beta2 0.5 outside the model's allowed range"),
    "eps": (ADAM, 1e-7, 1e-3, "eps 0.001 outside the model's allowed range"),
    "shuffle": (SGD, True, "yes", "shuffle must be true or false"),
    "seed": (SGD, 11, -1, "seed -1 must be not negative"),
}


def data():
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0, 255, (10, 3, 8, 8)).astype(np.float32)
    labels = [("Cat", "Dog")[int(i)] for i in rng.integers(0, 2, 10)]
    return inputs, labels


@pytest.mark.parametrize("name", list(CASES))
def test_override_inside_is_used(tmp_path, name):
    options, inside, _, _ = CASES[name]
    spec = build_updatable_spec(conv_prefix=False, epochs=2, **options)
    inputs, labels = data()
    examples = [Example(x, y) for x, y in zip(inputs, labels, strict=True)]
    result = run_update(spec, examples, overrides={name: inside}, cache=FeatureCache(tmp_path))
    assert result.parameters_used[name] == inside
    twin = TorchTwin(spec)
    reference = train_like_update(twin, inputs, labels, {name: inside})
    ours = [e.loss_value for e in result.events if e.event == "miniBatchEnd"]
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    got, want = spec_weights(result.spec), trained_weights(twin)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_override_outside_is_refused_before_any_work(tmp_path, name):
    options, _, outside, words = CASES[name]
    spec = build_updatable_spec(conv_prefix=False, **options)
    inputs, labels = data()
    cache = FeatureCache(tmp_path)
    with pytest.raises(ParameterError) as info:
        run_update(spec, [Example(inputs[0], labels[0])], overrides={name: outside}, cache=cache)
    assert info.value.parameter == name
    assert words in str(info.value)
    assert cache.computed == 0


@pytest.mark.parametrize("name,value", [("momentum", 0.1), ("beta1", 0.9)])
def test_override_for_the_other_optimizer_is_refused(tmp_path, name, value):
    options = ADAM if name == "momentum" else SGD
    spec = build_updatable_spec(conv_prefix=False, **options)
    inputs, labels = data()
    with pytest.raises(ParameterError, match="does not apply"):
        run_update(
            spec,
            [Example(inputs[0], labels[0])],
            overrides={name: value},
            cache=FeatureCache(tmp_path),
        )
