"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import tempfile

# Tests never touch a user's real cache: one throw-away cache for the whole session
# (a test that needs an empty cache sets MLUPDATED_CACHE_DIR itself).
os.environ["MLUPDATED_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlupdated-test-cache-")
