"""Fixtures of the sync-recipe tests: a tiny model and a running daemon per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.updatable_specs import build_updatable_spec
from syncdaemon import STABILITY_SECONDS, Daemon, set_config_key


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small updatable Cat/Dog classifier with an image input."""
    spec = build_updatable_spec(input_shape=(3, 16, 16), classes=("Cat", "Dog"))
    path = tmp_path_factory.mktemp("model") / "Tiny.mlmodel"
    path.write_bytes(spec.SerializeToString())
    return path


@pytest.fixture
def make_daemon(tmp_path: Path, tiny_model: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: a workspace made with ``mlupdated init``, config tuned, daemon started."""
    started: list[Daemon] = []
    # AF_UNIX socket paths are limited to ~100 bytes: keep the scratch folder short.
    scratch = Path(tempfile.mkdtemp(prefix="mlsync-"))

    def make(*, observer: str = "native") -> Daemon:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        env.pop("NOTIFY_SOCKET", None)
        env.pop("MLUPDATED_WORKSPACE", None)
        workspace = tmp_path / "ws"
        daemon = Daemon(workspace, env, scratch)
        made = daemon.cli("init", str(workspace), "--model", str(tiny_model))
        assert made.returncode == 0, made.stderr
        config = workspace / "config.toml"
        text = config.read_text()
        # No update may start during a test: we count what is queued, not trained.
        text = set_config_key(text, "update", "min_batch", "100000")
        text = set_config_key(text, "intake", "observer", f'"{observer}"')
        text = set_config_key(text, "intake", "polling_interval", "0.3")
        text = set_config_key(text, "intake", "stability_seconds", str(STABILITY_SECONDS))
        config.write_text(text)
        daemon.start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
    shutil.rmtree(scratch, ignore_errors=True)
