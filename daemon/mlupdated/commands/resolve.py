"""Which workspace and which model a command works on: one rule for every command.

The workspace is ``--workspace``; else the workspace around the current directory;
else the command's own default (``$MLUPDATED_WORKSPACE``, else ``~/mlupdated``; the
system service's is ``/var/lib/mlupdated``). The model of ``predict``, ``inspect``
and ``update`` is ``--model``; else the current model of the workspace given by
``--workspace`` or found around the current directory; else the bundled one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..paths import bundled_model_path
from ..service.workspace import WORKSPACE_ENV, find_workspace

__all__ = ["bundled_model_path", "default_workspace", "model_from_args", "workspace_root"]


def default_workspace() -> Path:
    """``$MLUPDATED_WORKSPACE``, else ``~/mlupdated``."""
    env = os.environ.get(WORKSPACE_ENV)
    return Path(env).expanduser() if env else Path.home() / "mlupdated"


def workspace_root(args: argparse.Namespace, *, default: Path | None = None) -> Path:
    """``--workspace``, else the workspace around the current directory, else
    ``default`` (``$MLUPDATED_WORKSPACE``, else ``~/mlupdated``, when not given)."""
    given = getattr(args, "workspace", None)
    if given:
        return Path(given).expanduser()
    around = find_workspace()
    if around is not None:
        return around
    return default if default is not None else default_workspace()


def model_from_args(args: argparse.Namespace) -> Path:
    """``--model``, else the workspace's current model, else the bundled default."""
    if getattr(args, "model", None):
        return Path(args.model)
    given = getattr(args, "workspace", None)
    workspace = Path(given).expanduser() if given else find_workspace()
    if workspace is not None:
        return workspace / "models" / "current.mlmodel"
    return bundled_model_path()
