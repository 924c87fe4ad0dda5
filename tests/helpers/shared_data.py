"""The team's shared data folders (photos and models other people made) for the tests.

Found by ``tools/shared_data.py`` (``$MLUPDATED_PETS`` …, else ``../shared/<name>``).
Where a folder is absent a test that needs it skips with one line saying where to put
it; in CI (``CI=true``) the folders are always there, so an absent one fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.shared_data import PETS, PETS_BREEDS, ZOO, SharedFolder

__all__ = ["PETS", "PETS_BREEDS", "ZOO", "require"]


def require(folder: SharedFolder) -> Path:
    """The folder's path; skip the test (fail it in CI) where it is absent."""
    found = folder.find()
    if found is not None:
        return found
    reason = folder.missing_reason()
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must have it)", pytrace=False)
    pytest.skip(reason)
