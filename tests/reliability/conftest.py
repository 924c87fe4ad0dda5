"""Fixtures of the reliability suites (see harness.py; the long mode is an environment
variable so that ``tests/reliability/run_suite.py`` can switch it on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlupdated.coreml.spec import save_spec

from tests.daemon.conftest import IMAGE_SIZE, DaemonProcess, Workspace
from tests.helpers.updatable_specs import build_updatable_spec


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small updatable Cat/Dog model the daemon's own tests use."""
    path = tmp_path_factory.mktemp("model") / "CatDogSmall.mlmodel"
    spec = build_updatable_spec(
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        conv_channels=4,
        hidden=8,
        epochs=10,
        learning_rate=0.1,
        batch_size=4,
        batch_sizes=(2, 4, 8, 10),
        weight_seed=3,
    )
    save_spec(spec, path)
    return path


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Factory of daemon processes; every one is killed at the end of the test."""
    made: list[DaemonProcess] = []

    def make(ws: Workspace, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(ws.root, env)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.cleanup()
