"""The daemon's configuration: ``config.toml``, typed and validated once, at load.

Every key has a default, so a missing file (or a missing key) means "the defaults".
Anything wrong — an unknown section or key, a wrong type, a value out of range —
raises ``ConfigError`` with one line that names the file and the key, e.g.
``config.toml: update.min_batch: expected an integer ≥ 1, got "ten"``.
``DEFAULT_CONFIG_TEXT`` is the commented file ``mlupdated init`` writes; the copy in
the repository's ``config/config.toml`` must stay identical (a test checks).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..coreml.images import DEFAULT_MAX_PIXELS as IMAGE_MAX_PIXELS
from ..errors import ConfigError
from . import config_values as checks
from .config_text import CONFIG_NAME as CONFIG_NAME
from .config_text import DEFAULT_CONFIG_TEXT as DEFAULT_CONFIG_TEXT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# The same pixel limit the image loader uses by default (twice Pillow's own warning
# level): a 100 MP camera photo is fine, a decompression bomb is refused unopened.
DEFAULT_MAX_PIXELS = IMAGE_MAX_PIXELS

POLICIES = ("incremental", "replay")
OBSERVERS = ("native", "polling")
RESIZE_MODES = ("scaleFill", "centerCrop", "scaleFit")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True)
class UpdateConfig:
    """When and how an update runs."""

    min_batch: int = 10
    quiet_seconds: float = 30.0
    max_wait_seconds: float = 3600.0
    policy: str = "incremental"
    replay_sample: int = 50
    rehearsal: bool = True
    cron: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    seed: int | None = None
    timeout_seconds: float = 1800.0
    retry_backoff_seconds: float = 60.0
    max_backoff_seconds: float = 3600.0
    max_attempts: int = 3


@dataclass(frozen=True)
class GateConfig:
    """The check a candidate model must pass before it becomes current."""

    enabled: bool = True
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    tolerance: float = 0.0


@dataclass(frozen=True)
class IntakeConfig:
    """How dropped files are found and accepted."""

    observer: str = "native"
    polling_interval: float = 2.0
    rescan_seconds: float = 300.0
    stability_seconds: float = 2.0
    ignore: tuple[str, ...] = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    resize: str = "scaleFill"
    follow_symlinks: bool = False


@dataclass(frozen=True)
class StoreConfig:
    """The model store."""

    keep_versions: int = 20


@dataclass(frozen=True)
class DaemonConfig:
    """The daemon process itself."""

    shutdown_timeout: float = 30.0
    log_level: str = "info"
    log_format: str = "auto"


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``path`` is the file it came from (may not exist)."""

    update: UpdateConfig = field(default_factory=UpdateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    path: Path | None = None


_SCHEMA: dict[str, tuple[type, dict[str, checks.Validator]]] = {
    "update": (
        UpdateConfig,
        {
            "min_batch": checks.integer(1),
            "quiet_seconds": checks.number(0),
            "max_wait_seconds": checks.number(0),
            "policy": checks.choice(POLICIES),
            "replay_sample": checks.integer(0),
            "rehearsal": checks.boolean,
            "cron": checks.cron,
            "epochs": checks.integer(1),
            "learning_rate": checks.number(0, strict=True),
            "batch_size": checks.integer(1),
            "seed": checks.integer(0),
            "timeout_seconds": checks.number(0, strict=True),
            "retry_backoff_seconds": checks.number(0),
            "max_backoff_seconds": checks.number(0),
            "max_attempts": checks.integer(1),
        },
    ),
    "gate": (
        GateConfig,
        {
            "enabled": checks.boolean,
            "holdout_fraction": checks.number(0, maximum=1),
            "min_holdout": checks.integer(0),
            "tolerance": checks.number(0),
        },
    ),
    "intake": (
        IntakeConfig,
        {
            "observer": checks.choice(OBSERVERS),
            "polling_interval": checks.number(0, strict=True),
            "rescan_seconds": checks.number(0, strict=True),
            "stability_seconds": checks.number(0),
            "ignore": checks.globs,
            "max_pixels": checks.integer(1),
            "resize": checks.choice(RESIZE_MODES),
            "follow_symlinks": checks.boolean,
        },
    ),
    "store": (StoreConfig, {"keep_versions": checks.integer(1)}),
    "daemon": (
        DaemonConfig,
        {
            "shutdown_timeout": checks.number(0),
            "log_level": checks.choice(LOG_LEVELS),
            "log_format": checks.choice(LOG_FORMATS),
        },
    ),
}


def _show(value: Any) -> str:
    """A value as it looks in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def config_from_dict(data: dict[str, Any], *, path: Path | None = None) -> Config:
    """Validate a parsed TOML document into a ``Config`` (see module docstring)."""
    where = str(path) if path is not None else CONFIG_NAME
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _SCHEMA:
            known = ", ".join(_SCHEMA)
            raise ConfigError(f"unknown section [{name}] (known: {known})", key=name, path=where)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}: expected a table [{name}], got {_show(value)}", key=name, path=where
            )
        cls, validators = _SCHEMA[name]
        clean: dict[str, Any] = {}
        for key, raw in value.items():
            dotted = f"{name}.{key}"
            if key not in validators:
                known = ", ".join(validators)
                raise ConfigError(
                    f"{dotted}: unknown key (known in [{name}]: {known})", key=dotted, path=where
                )
            try:
                clean[key] = validators[key](raw)
            except checks.Bad as bad:
                raise ConfigError(
                    f"{dotted}: expected {bad.expected}, got {_show(raw)}", key=dotted, path=where
                ) from None
        sections[name] = cls(**clean)
    config = Config(**sections, path=path)
    _check_relations(config, where)
    return config


def _check_relations(config: Config, where: str) -> None:
    update = config.update
    if update.max_backoff_seconds < update.retry_backoff_seconds:
        raise ConfigError(
            "update.max_backoff_seconds: expected a number ≥ update.retry_backoff_seconds "
            f"({update.retry_backoff_seconds:g}), got {update.max_backoff_seconds:g}",
            key="update.max_backoff_seconds",
            path=where,
        )


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; a missing file gives the defaults.

    Raises ``ConfigError`` (one line naming the file and the key) on any problem.
    """
    config_path = Path(path)
    try:
        raw = config_path.read_bytes()
    except FileNotFoundError:
        return Config(path=config_path)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=config_path) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=config_path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=config_path) from None
    return config_from_dict(data, path=config_path)


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """A copy of ``config`` with some keys of one section changed (validated)."""
    _cls, validators = _SCHEMA[section]
    current = getattr(config, section)
    clean = {}
    for key, value in values.items():
        try:
            clean[key] = validators[key](list(value) if key == "ignore" else value)
        except checks.Bad as bad:
            raise ConfigError(
                f"{section}.{key}: expected {bad.expected}, got {_show(value)}",
                key=f"{section}.{key}",
            ) from None
    return replace(config, **{section: replace(current, **clean)})


def default_values() -> dict[str, dict[str, Any]]:
    """Every key and its default, by section (for docs and tests)."""
    result: dict[str, dict[str, Any]] = {}
    for name, (cls, _validators) in _SCHEMA.items():
        instance = cls()
        result[name] = {f.name: getattr(instance, f.name) for f in fields(cls)}
    return result
