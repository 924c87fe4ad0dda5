"""``mlupdated rollback [--workspace DIR] [--to VERSION]``: make an earlier version
current."""

from __future__ import annotations

import argparse

from ..service.store import ModelStore
from ..service.workspace import open_workspace
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Roll back to ``--to`` (default: the previous promoted version)."""
    workspace = open_workspace(workspace_root(args), create=False, model_path=None)
    store = ModelStore(workspace)
    before = store.current_version()
    after = store.rollback(getattr(args, "to", None))
    print(f"rolled back: version {after} is current (was {before})")
    return 0
