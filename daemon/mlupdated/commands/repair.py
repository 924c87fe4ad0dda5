"""``mlupdated repair [--workspace DIR]``: rebuild a lost or unreadable manifest and
restore a missing ``current.mlmodel``, as the daemon does at start-up."""

from __future__ import annotations

import argparse

from ..service.store import ModelStore
from ..service.workspace import open_workspace
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Repair the store (safe beside a running daemon: both hold the store's lock)."""
    workspace = open_workspace(workspace_root(args), create=False, model_path=None)
    store = ModelStore(workspace)
    report = store.recover()
    done = {k: v for k, v in report.items() if v and k != "temps"}
    versions = ", ".join(map(str, store.versions()))
    current = store.current_version()
    if not done:
        print(f"{workspace.root}: nothing to repair (versions {versions}; current {current})")
        return 0
    if report.get("manifest_rebuilt"):
        print(
            f"models/manifest.json rebuilt from models/versions/ "
            f"({report['manifest_rebuilt']}): versions {versions}; current {current}"
        )
    if report.get("restored_current"):
        print(f"models/current.mlmodel restored from version {report['restored_current']}")
    return 0
