"""config.toml: defaults, the shipped example, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlupdated.errors import ConfigError
from mlupdated.service.config import (
    DEFAULT_CONFIG_TEXT,
    Config,
    config_from_dict,
    default_values,
    load_config,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml")
    assert config == Config(path=tmp_path / "config.toml")
    assert config.update.min_batch == 10
    assert config.update.policy == "incremental"
    assert config.intake.observer == "native"
    assert config.gate.enabled is True
    assert config.store.keep_versions == 20
    assert config.update.epochs is None


def test_default_text_matches_the_repository_copy() -> None:
    assert (REPO / "config" / "config.toml").read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT


def test_default_text_loads_to_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, DEFAULT_CONFIG_TEXT)
    assert load_config(path) == Config(path=path)


def test_every_key_is_in_the_default_text_with_a_comment() -> None:
    lines = DEFAULT_CONFIG_TEXT.splitlines()
    for section, values in default_values().items():
        assert f"[{section}]" in lines
        for key in values:
            index = next(
                i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key} =")
            )
            # The line right above each key (or above its commented block) is a comment.
            assert lines[index - 1].startswith("#"), key


def test_values_are_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[update]\nmin_batch = 3\nquiet_seconds = 1.5\npolicy = "replay"\ncron = "0 3 * * *"\n'
        'epochs = 4\nlearning_rate = 0.1\n[intake]\nobserver = "polling"\n'
        'ignore = ["*.raw", "drafts"]\nfollow_symlinks = true\n[gate]\nenabled = false\n',
    )
    config = load_config(path)
    assert config.update.min_batch == 3
    assert config.update.quiet_seconds == 1.5
    assert config.update.policy == "replay"
    assert config.update.cron == "0 3 * * *"
    assert config.update.epochs == 4
    assert config.intake.observer == "polling"
    assert config.intake.ignore == ("*.raw", "drafts")
    assert config.intake.follow_symlinks is True
    assert config.gate.enabled is False
    assert config.path == path


BAD = [
    ('[update]\nmin_batch = "ten"\n', "update.min_batch", 'expected an integer ≥ 1, got "ten"'),
    ("[update]\nmin_batch = 0\n", "update.min_batch", "expected an integer ≥ 1, got 0"),
    ("[update]\nmin_batch = 2.5\n", "update.min_batch", "got 2.5"),
    ("[update]\nmin_batch = true\n", "update.min_batch", "got true"),
    ("[update]\nquiet_seconds = -1\n", "update.quiet_seconds", "expected a number ≥ 0"),
    ('[update]\nquiet_seconds = "soon"\n', "update.quiet_seconds", 'got "soon"'),
    ('[update]\npolicy = "fast"\n', "update.policy", 'one of "incremental", "replay"'),
    ('[update]\ncron = "every day"\n', "update.cron", "crontab"),
    ("[update]\nlearning_rate = 0\n", "update.learning_rate", "expected a number > 0"),
    ("[update]\ntimeout_seconds = nan\n", "update.timeout_seconds", "got NaN"),
    (
        "[update]\nretry_backoff_seconds = 100\nmax_backoff_seconds = 10\n",
        "update.max_backoff_seconds",
        "≥ update.retry_backoff_seconds",
    ),
    ("[update]\nmin_bach = 3\n", "update.min_bach", "unknown key"),
    ("[gate]\nenabled = 1\n", "gate.enabled", "expected true or false, got 1"),
    ("[gate]\nholdout_fraction = 1.0\n", "gate.holdout_fraction", "< 1"),
    ('[intake]\nobserver = "fsevents"\n', "intake.observer", '"native", "polling"'),
    ('[intake]\nignore = "*.raw"\n', "intake.ignore", "a list of non-empty glob strings"),
    ("[intake]\nignore = [1]\n", "intake.ignore", "a list"),
    ('[intake]\nresize = "crop"\n', "intake.resize", '"scaleFill", "centerCrop", "scaleFit"'),
    ("[intake]\nmax_pixels = -5\n", "intake.max_pixels", "≥ 1"),
    ("[store]\nkeep_versions = 0\n", "store.keep_versions", "≥ 1"),
    ('[daemon]\nlog_level = "loud"\n', "daemon.log_level", '"debug"'),
    ('[daemon]\nlog_format = "xml"\n', "daemon.log_format", '"json"'),
    ("[updates]\nmin_batch = 3\n", "updates", "unknown section [updates]"),
    ("update = 3\n", "update", "expected a table"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), BAD)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert info.value.key == key
    assert fragment in message


def test_example_message_from_the_contract(tmp_path: Path) -> None:
    path = _write(tmp_path, '[update]\nmin_batch = "ten"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).endswith(
        'config.toml: update.min_batch: expected an integer ≥ 1, got "ten"'
    )


def test_broken_toml_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[update\nmin_batch = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid TOML")
    assert "\n" not in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[update]\nmin_batch = \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "config.toml")


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.update.min_batch = 3  # type: ignore[misc]


def test_overrides_are_validated() -> None:
    config = with_overrides(Config(), "intake", stability_seconds=0.1, ignore=["*.x"])
    assert config.intake.stability_seconds == 0.1
    assert config.intake.ignore == ("*.x",)
    with pytest.raises(ConfigError, match="intake.stability_seconds"):
        with_overrides(Config(), "intake", stability_seconds=-1)


def test_partial_sections_keep_other_defaults() -> None:
    config = config_from_dict({"update": {"min_batch": 2}})
    assert config.update.min_batch == 2
    assert config.update.quiet_seconds == 30.0
    assert config.intake == Config().intake
