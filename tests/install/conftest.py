"""Fixtures of the service-install tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlupdated.service import install


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME, no XDG overrides, Linux unless a test says otherwise."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("MLUPDATED_WORKSPACE", raising=False)
    monkeypatch.setenv(install.PLATFORM_ENV, "linux")
    monkeypatch.setenv(install.ROOT_ENV, str(tmp_path / "root"))
    return home
