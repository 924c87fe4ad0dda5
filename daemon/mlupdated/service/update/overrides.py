"""The training parameters the daemon's config overrides, checked against the model.

``config.update.{epochs, learning_rate, batch_size, seed}`` replace the values the
model carries in its ``updateParams``; the model also says what each may be (a range
or a set). A value outside that would make every run fail the same way, so the daemon
checks the overrides once, when it loads the config (start-up and SIGHUP), and refuses
the config with one line naming the key and what the model allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...coreml.params import OVERRIDE_NAMES
from ...errors import ConfigError, ParameterError

if TYPE_CHECKING:
    from ..config import Config

# The training parameters the daemon's config may override.
DAEMON_PARAMETERS = ("epochs", "learning_rate", "mini_batch_size", "seed")
# config.update key → the model's training parameter it overrides.
OVERRIDE_KEYS = {OVERRIDE_NAMES[param]: param for param in DAEMON_PARAMETERS}


def training_overrides(update: Any) -> dict[str, Any]:
    """The overrides a ``config.update`` section sets, by training-parameter name."""
    values = {param: getattr(update, key) for key, param in OVERRIDE_KEYS.items()}
    return {param: value for param, value in values.items() if value is not None}


def check_overrides(config: Config, *, model_path: Path) -> None:
    """Raise ``ConfigError`` (key ``update.KEY``, the config's path) when an override in
    ``config.update`` is not allowed by the model at ``model_path``."""
    overrides = training_overrides(config.update)
    if not overrides:
        return
    from ...coreml.params import check_override, update_parameters
    from ...coreml.spec import load_spec

    params = update_parameters(load_spec(model_path))
    keys = {param: key for key, param in OVERRIDE_KEYS.items()}
    for param, value in overrides.items():
        try:
            check_override(param, value, params)
        except ParameterError as exc:
            key = f"update.{keys[param]}"
            raise ConfigError(
                f"{key}: {exc.reason} (model {Path(model_path).name})",
                key=key,
                path=config.path,
            ) from None
