"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os

# Tests never use a user's real cache or workspace.
os.environ.setdefault("MLUPDATED_CACHE_DIR", os.path.join(os.getcwd(), ".pytest_cache", "mlupdated"))
