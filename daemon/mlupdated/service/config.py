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
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..coreml.images import DEFAULT_MAX_PIXELS as IMAGE_MAX_PIXELS
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_NAME = "config.toml"

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


# --- validators: each returns the clean value or raises _Bad(expectation) ------------


class _Bad(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected
        super().__init__(expected)


Validator = Callable[[Any], Any]


def _integer(minimum: int) -> Validator:
    def check(value: Any) -> int:
        # TOML booleans are Python ints; "true" is never a count.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Bad(f"an integer ≥ {minimum}")
        return value

    return check


def _number(minimum: float, *, strict: bool = False, maximum: float | None = None) -> Validator:
    low = f"> {minimum:g}" if strict else f"≥ {minimum:g}"
    expected = f"a number {low}" + (f" and < {maximum:g}" if maximum is not None else "")

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(expected)
        number = float(value)
        if not math.isfinite(number) or number < minimum or (strict and number == minimum):
            raise _Bad(expected)
        if maximum is not None and number >= maximum:
            raise _Bad(expected)
        return number

    return check


def _choice(options: tuple[str, ...]) -> Validator:
    expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _Bad(expected)
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _globs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Bad("a list of non-empty glob strings")
    return tuple(value)


def _cron(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad('a crontab expression like "0 3 * * *"')
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise _Bad(f'a valid crontab expression like "0 3 * * *" ({exc})') from None
    return value


_SCHEMA: dict[str, tuple[type, dict[str, Validator]]] = {
    "update": (
        UpdateConfig,
        {
            "min_batch": _integer(1),
            "quiet_seconds": _number(0),
            "max_wait_seconds": _number(0),
            "policy": _choice(POLICIES),
            "replay_sample": _integer(0),
            "rehearsal": _boolean,
            "cron": _cron,
            "epochs": _integer(1),
            "learning_rate": _number(0, strict=True),
            "batch_size": _integer(1),
            "seed": _integer(0),
            "timeout_seconds": _number(0, strict=True),
            "retry_backoff_seconds": _number(0),
            "max_backoff_seconds": _number(0),
        },
    ),
    "gate": (
        GateConfig,
        {
            "enabled": _boolean,
            "holdout_fraction": _number(0, maximum=1),
            "min_holdout": _integer(0),
            "tolerance": _number(0),
        },
    ),
    "intake": (
        IntakeConfig,
        {
            "observer": _choice(OBSERVERS),
            "polling_interval": _number(0, strict=True),
            "rescan_seconds": _number(0, strict=True),
            "stability_seconds": _number(0),
            "ignore": _globs,
            "max_pixels": _integer(1),
            "resize": _choice(RESIZE_MODES),
            "follow_symlinks": _boolean,
        },
    ),
    "store": (StoreConfig, {"keep_versions": _integer(1)}),
    "daemon": (
        DaemonConfig,
        {
            "shutdown_timeout": _number(0),
            "log_level": _choice(LOG_LEVELS),
            "log_format": _choice(LOG_FORMATS),
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
            except _Bad as bad:
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
        except _Bad as bad:
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


DEFAULT_CONFIG_TEXT = """\
# mlupdated workspace configuration.
# Every key is shown with its default; delete or comment out a line to use the default.
# Keys that are commented out have no default value of their own ("use the model's").
# Reload a running daemon with SIGHUP (systemctl --user reload mlupdated).

[update]
# Pending corrections needed before an update is considered.
min_batch = 10
# ... and then no new drop for this many seconds (the user has finished a batch).
quiet_seconds = 30
# ... or, if drops keep coming, update anyway once the oldest pending one is this old.
max_wait_seconds = 3600
# "incremental": train the new corrections on the current model (Core ML's behaviour);
# "replay": add a sample of earlier corrections, so that older lessons are not forgotten.
policy = "incremental"
# How many earlier corrections "replay" adds to each update.
replay_sample = 50
# Train on the model's rehearsal set (general examples it carries, if any) beside the
# corrections, each correction weighted as the model says: the model learns the
# corrected animal and keeps what it knew about the others.
rehearsal = true
# Also update on a schedule (crontab syntax: minute hour day month weekday), if set.
# cron = "0 3 * * *"
# Training parameters; unset means "as stored in the model". They must lie inside
# the ranges the model allows.
# epochs = 10
# learning_rate = 0.01
# batch_size = 8
# seed = 0
# An update that runs longer than this is stopped and counted as failed.
timeout_seconds = 1800
# After a failed update, wait this long before retrying; doubled after each failure...
retry_backoff_seconds = 60
# ... up to this.
max_backoff_seconds = 3600

[gate]
# Check each candidate model before it becomes current.
enabled = true
# Share of the corrections held aside (not trained on) to compare candidate and current.
holdout_fraction = 0.2
# Hold corrections aside only once at least this many can be.
min_holdout = 5
# How much worse (accuracy, 0..1) the candidate may be and still be made current.
tolerance = 0.0

[intake]
# "native" (inotify/FSEvents) or "polling" (network shares and sync folders where
# native events get lost).
observer = "native"
# Seconds between two looks at the folders with the polling observer.
polling_interval = 2.0
# Full rescan of the folders every this many seconds: events are hints, the rescan is
# the truth.
rescan_seconds = 300
# A file is taken once its size and modification time have not changed for this long.
stability_seconds = 2.0
# Extra file or folder names (globs) to ignore; hidden files and the temporary names of
# sync tools (Syncthing, Nextcloud, rsync, browsers, iCloud, Synology) are always ignored.
ignore = []
# Images with more pixels than this are refused (decompression bomb guard).
max_pixels = 178956970
# How images are fitted to the model's input size: "scaleFill" (stretch),
# "centerCrop" or "scaleFit".
resize = "scaleFill"
# Follow symbolic links that point inside this workspace (links pointing outside it are
# never followed).
follow_symlinks = false

[store]
# Model versions kept in models/versions/ (version 1 and the current one are always kept).
keep_versions = 20

[daemon]
# Seconds to wait for a running update at shut-down before abandoning it.
shutdown_timeout = 30
# "debug", "info", "warning" or "error".
log_level = "info"
# "auto" (JSON lines unless stderr is a terminal), "json" or "console".
log_format = "auto"
"""
