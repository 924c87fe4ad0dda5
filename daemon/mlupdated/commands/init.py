"""``mlupdated init DIR [--model PATH]``: create (or complete) a workspace."""

from __future__ import annotations

import argparse

from ..service.workspace import make_workspace, model_labels
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
    # The model's own labels, in its order: a stray folder in corrections/ is no label.
    labels = ", ".join(model_labels(ws.current_model))
    print(
        f"drop corrections into {ws.corrections}/<Label>/ (labels: {labels}); "
        f"start with: mlupdated run --workspace {ws.root}"
    )
    return 0
