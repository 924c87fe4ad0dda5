"""``mlupdated service install|uninstall|print [--user|--system] [--web] [--workspace DIR]``
(``--web``: the review page's unit or agent, beside the daemon's)."""

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
    web = bool(getattr(args, "web", False))
    check_scope(platform, scope)
    if args.action == "uninstall":
        return _say(uninstall(platform, scope, web=web))
    chosen = workspace_root(args, default=default_workspace_for(scope))
    workspace = Path(os.path.abspath(chosen))
    command = installed_command()
    if args.action == "print":
        text = render_service(platform, scope, command=command, workspace=workspace, web=web)
        sys.stdout.write(text)
        return 0
    if platform == "macos":
        return _say(install_macos(workspace, command, web=web))
    return _say(install_linux(scope, workspace, command, web=web))


def _say(lines: list[Said]) -> int:
    for line in lines:
        print(line.text, file=sys.stderr if line.warning else sys.stdout)
    return 0
