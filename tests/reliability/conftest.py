"""Fixtures of the reliability suites (see harness.py; the long mode is an environment
variable so that ``tests/reliability/run_suite.py`` can switch it on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import DaemonProcess, build_small_model, daemon_factory


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small updatable Cat/Dog model the daemon's own tests use."""
    return build_small_model(tmp_path_factory.mktemp("model") / "CatDogSmall.mlmodel")


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Factory of daemon processes; every one is killed at the end of the test."""
    with daemon_factory() as make:
        yield make
