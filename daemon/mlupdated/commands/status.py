"""``mlupdated status [--workspace DIR] [--json]``: what the workspace and its daemon
are doing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import WorkspaceError
from ..service.status import collect_status, render_text
from ..service.workspace import Workspace
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Print the status (text, or one JSON object with ``--json``)."""
    ws = Workspace(workspace_root(args).absolute())
    # A deleted current.mlmodel (restored by the daemon) or manifest (then the store
    # says how to rebuild it) still leaves a workspace.
    models = (ws.current_model, ws.manifest, ws.versions)
    if not Path(ws.state).is_dir() or not any(Path(p).exists() for p in models):
        raise WorkspaceError("not a workspace; run 'mlupdated init' first", path=ws.root)
    data = collect_status(ws)
    if getattr(args, "json", False):
        print(json.dumps(data, default=str))
    else:
        print(render_text(data))
    return 0
