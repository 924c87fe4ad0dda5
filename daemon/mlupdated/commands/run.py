"""``mlupdated run [--workspace DIR]``: the daemon, in the foreground."""

from __future__ import annotations

import argparse
import os

from ..service.app import UMASK_BITS, Daemon
from .resolve import bundled_model_path, workspace_root


def run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT; the bundled model seeds a new workspace."""
    # Never make anything group- or world-writable, whatever umask we were started with.
    os.umask(os.umask(0) | UMASK_BITS)
    return Daemon(workspace_root(args), model_path=bundled_model_path()).run()
