"""``mlupdated init DIR [--model PATH]``: create (or complete) a workspace."""

from __future__ import annotations

import argparse

from ..service.workspace import make_workspace
from .resolve import bundled_model_path


def run(args: argparse.Namespace) -> int:
    """Make the workspace around ``--model`` (default: the bundled model); list what
    was created and say how to start."""
    model = getattr(args, "model", None) or bundled_model_path()
    ws, created = make_workspace(args.dir, model_path=model)
    if not created:
        print(f"{ws.root}: already a workspace; nothing to do")
        return 0
    print(f"{ws.root}: workspace ready")
    for path in created:
        shown = "." if path == ws.root else path.relative_to(ws.root).as_posix()
        suffix = "/" if path.is_dir() else ""
        print(f"  created {shown}{suffix}")
    labels = ", ".join(sorted(p.name for p in ws.corrections.iterdir() if p.is_dir()))
    print(
        f"drop corrections into {ws.corrections}/<Label>/ (labels: {labels}); "
        f"start with: mlupdated run --workspace {ws.root}"
    )
    return 0
