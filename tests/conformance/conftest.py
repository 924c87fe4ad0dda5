"""Fixtures of the conformance suite: real photographs on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from .common import save_photos


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return save_photos(tmp_path_factory.mktemp("photos"))
