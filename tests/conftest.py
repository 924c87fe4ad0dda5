"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# The repository root, so that tests import ``tests.helpers`` and ``tools.shared_data``
# however pytest was started.
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Tests never touch a user's real cache: one throw-away cache for the whole session
# (a test that needs an empty cache sets MLUPDATED_CACHE_DIR itself).
os.environ["MLUPDATED_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlupdated-test-cache-")
