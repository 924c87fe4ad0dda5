"""``mlupdated service install|uninstall|print [--user|--system] [--workspace DIR]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..service.install import (
    Said,
    check_scope,
    current_platform,
    default_scope,
    default_workspace_for,
    install_linux,
    install_macos,
    installed_command,
    render_service,
    uninstall,
)
from .resolve import workspace_root


def run(args: argparse.Namespace) -> int:
    """Install, remove or print the service file for this platform and scope."""
    platform = current_platform()
    scope = args.scope or default_scope(platform)
    check_scope(platform, scope)
    if args.action == "uninstall":
        return _say(uninstall(platform, scope))
    chosen = workspace_root(args, default=default_workspace_for(scope))
    workspace = Path(os.path.abspath(chosen))
    command = installed_command()
    if args.action == "print":
        sys.stdout.write(render_service(platform, scope, command=command, workspace=workspace))
        return 0
    if platform == "macos":
        return _say(install_macos(workspace, command))
    return _say(install_linux(scope, workspace, command))


def _say(lines: list[Said]) -> int:
    for line in lines:
        print(line.text, file=sys.stderr if line.warning else sys.stdout)
    return 0
