"""Training overrides in the daemon's config, checked against the model's update
parameters before any run."""

from __future__ import annotations

import pytest
from mlupdated.coreml.spec import save_spec
from mlupdated.errors import ConfigError
from mlupdated.service.config import config_from_dict
from mlupdated.service.update.overrides import check_overrides, training_overrides

from tests.helpers.updatable_specs import build_updatable_spec


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.mlmodel"
    save_spec(build_updatable_spec(lr_range=(0.0, 1.0), batch_sizes=(2, 4, 8)), path)
    return path


def test_config_keys_map_to_training_parameters() -> None:
    update = config_from_dict({"update": {"batch_size": 4, "learning_rate": 0.5}}).update
    assert training_overrides(update) == {"mini_batch_size": 4, "learning_rate": 0.5}
    assert training_overrides(config_from_dict({}).update) == {}


def test_allowed_overrides_pass(model) -> None:
    config = config_from_dict({"update": {"learning_rate": 1.0, "batch_size": 8, "epochs": 2}})
    check_overrides(config, model_path=model)


@pytest.mark.parametrize(
    ("update", "key", "allowed"),
    [
        ({"learning_rate": 50}, "update.learning_rate", "range [0.0, 1.0]"),
        ({"batch_size": 5}, "update.batch_size", "set {2, 4, 8}"),
    ],
)
def test_forbidden_override_names_key_and_allowed_values(model, tmp_path, update, key, allowed):
    where = tmp_path / "config.toml"
    config = config_from_dict({"update": update}, path=where)
    with pytest.raises(ConfigError) as caught:
        check_overrides(config, model_path=model)
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"{where}: {key}: ")
    assert allowed in message
    assert "\n" not in message
