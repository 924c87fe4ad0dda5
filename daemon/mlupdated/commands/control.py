"""``mlupdated update-now | pause | resume``: talk to the running daemon."""

from __future__ import annotations

import argparse

from ..errors import WorkspaceError
from ..service.control import request_update, set_paused
from ..service.workspace import Workspace
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.action`` (``update-now``, ``pause``, ``resume``)."""
    ws = Workspace(workspace_root(args).absolute())
    action = args.action
    if action == "update-now":
        pid = request_update(ws)
        print(f"update requested (daemon pid {pid})")
        return 0
    if action not in ("pause", "resume"):
        raise WorkspaceError(f"unknown control action {action!r}")
    pid = set_paused(ws, action == "pause")
    word = "paused" if action == "pause" else "resumed"
    if pid is None:
        print(f"{word} (no daemon is running; it takes effect when one starts)")
    else:
        print(f"{word} (daemon pid {pid})")
    return 0
