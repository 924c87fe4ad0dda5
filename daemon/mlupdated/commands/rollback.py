"""``mlupdated rollback [--workspace DIR] [--to VERSION]``: make an earlier version
current; the corrections learned only by the versions rolled back are pending again."""

from __future__ import annotations

import argparse

from ..service.update.rollback import roll_back
from ..service.workspace import open_workspace
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Roll back to ``--to`` (default: the previous promoted version)."""
    workspace = open_workspace(workspace_root(args), create=False, model_path=None)
    done = roll_back(workspace, getattr(args, "to", None))
    print(f"rolled back: version {done.after} is current (was {done.before})")
    if done.requeued:
        learned_by = sorted({c.version for c in done.requeued if c.version is not None})
        versions = ", ".join(str(v) for v in learned_by)
        print(
            f"{len(done.requeued)} corrections learned by version {versions} are pending "
            f"again; the next update learns them onto version {done.after}"
        )
    return 0
