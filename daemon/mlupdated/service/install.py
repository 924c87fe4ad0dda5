"""``mlupdated service install|uninstall|print``: the systemd unit or launchd agent.

The unit (Linux) or property list (macOS) is rendered from a template shipped as
package data, with the absolute path of the installed ``mlupdated`` command and of the
workspace filled in: services start without a login shell, so nothing may rely on
``PATH`` or ``~``. This module writes files only; it never runs ``systemctl`` or
``launchctl`` itself but prints the one command that enables the service, so nothing
happens to the machine that the user did not see and type.
"""

from __future__ import annotations

import os
import pwd
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigError, StoreError
from ..fsutil import atomic_write_bytes
from .unitfiles import (
    PLATFORM_ENV,
    ROOT_ENV,
    SYSTEM_USER,
    SYSTEM_WORKSPACE,
    SYSUSERS_FILE,
    agent_label,
    agent_log_dir,
    agent_plist_path,
    current_platform,
    installed_command,
    render_plist,
    render_sysusers,
    render_unit,
    system_unit_path,
    under_root,
    unit_name,
    user_unit_path,
)

__all__ = [
    "PLATFORM_ENV",
    "ROOT_ENV",
    "SYSTEM_USER",
    "Said",
    "check_scope",
    "current_platform",
    "default_scope",
    "default_workspace_for",
    "install_linux",
    "install_macos",
    "installed_command",
    "render_plist",
    "render_service",
    "render_sysusers",
    "render_unit",
    "uninstall",
]


# --- installing and removing ---------------------------------------------------------


class Said(NamedTuple):
    """One line for the user; ``warning`` lines go to standard error."""

    text: str
    warning: bool = False


def default_scope(platform: str) -> str:
    # root has no user manager worth the name: as root, the system unit is meant.
    if platform == "linux" and os.geteuid() == 0:
        return "system"
    return "user"


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _write(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path``; return "wrote", "replaced" or "unchanged"."""
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", path=path) from exc
    if old == data:
        return "unchanged"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory: {exc.strerror}", path=path) from exc
    atomic_write_bytes(path, data)
    return "wrote" if old is None else "replaced"


def _systemctl(scope: str) -> str:
    return "systemctl --user" if scope == "user" else "systemctl"


def _enable_line(
    scope: str, outcome: str, *, prerequisites: Sequence[str] = (), web: bool = False
) -> str:
    ctl = _systemctl(scope)
    name = unit_name(web=web).removesuffix(".service")
    if outcome == "replaced":
        steps = [f"{ctl} daemon-reload", f"{ctl} enable {name}", f"{ctl} restart {name}"]
    else:
        steps = [f"{ctl} enable --now {name}"]
    return " && ".join([*prerequisites, *steps])


def install_linux(
    scope: str, workspace: Path, command: list[str], *, web: bool = False
) -> list[Said]:
    """Write the unit (and, system-wide, the sysusers file); say how to enable it.

    ``web``: the review page's unit (``mlupdated web``), beside the daemon's.
    """
    if scope == "system" and os.geteuid() != 0 and not os.environ.get(ROOT_ENV):
        raise ConfigError(
            "installing the system service needs root: run it with sudo, or use --user"
        )
    kind = "system" if scope == "system" else "user"
    text = render_unit(kind, command=command, workspace=workspace, web=web)
    target = system_unit_path(web=web) if scope == "system" else user_unit_path(web=web)
    outcome = _write(target, text.encode("utf-8"))
    said = [Said(f"{outcome} {target}")]
    prerequisites: list[str] = []
    if scope == "system":
        sysusers = under_root(SYSUSERS_FILE)
        said.append(Said(f"{_write(sysusers, render_sysusers().encode('utf-8'))} {sysusers}"))
        if not _user_exists(SYSTEM_USER):
            prerequisites.append("systemd-sysusers")
        if workspace != SYSTEM_WORKSPACE and not workspace.exists():
            # Outside StateDirectory= nobody creates it for us, and ProtectSystem=strict
            # leaves the daemon unable to; the service user must own it.
            prerequisites.append(
                f"install -d -o {SYSTEM_USER} -g {SYSTEM_USER} {_shell_word(str(workspace))}"
            )
        if Path(command[0]).is_relative_to("/root"):
            said.append(
                Said(
                    f"warning: {command[0]} is inside /root, which the {SYSTEM_USER} user "
                    "cannot read; install mlupdated outside any home directory (for example "
                    "a virtual environment under /usr/local) and run this again",
                    warning=True,
                )
            )
    said.append(Said("enable and start it with:"))
    said.append(Said(f"  {_enable_line(scope, outcome, prerequisites=prerequisites, web=web)}"))
    if web:
        journal = "journalctl --user" if scope == "user" else "journalctl"
        said.append(Said(f"its login URL is in its log: {journal} -u {unit_name(web=True)}"))
    return said


def _shell_word(text: str) -> str:
    return shlex.quote(text)


def install_macos(workspace: Path, command: list[str], *, web: bool = False) -> list[Said]:
    """Write the launchd agent (``web``: the review page's); say how to load it."""
    home = Path.home()
    data = render_plist(command=command, workspace=workspace, home=home, web=web)
    target = agent_plist_path(home=home, web=web)
    log_dir = agent_log_dir(home=home)
    try:
        # launchd creates the log files but not their directory.
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory: {exc.strerror}", path=log_dir) from exc
    outcome = _write(target, data)
    domain = "gui/$(id -u)"
    path = _shell_word(str(target))
    if outcome == "replaced":
        label = agent_label(web=web)
        load = f"  launchctl bootout {domain}/{label}; launchctl bootstrap {domain} {path}"
    else:
        load = f"  launchctl bootstrap {domain} {path}"
    return [Said(f"{outcome} {target}"), Said("load and start it with:"), Said(load)]


def uninstall(platform: str, scope: str, *, web: bool = False) -> list[Said]:
    """Remove the unit or agent file (``web``: the review page's); say how to stop it."""
    name = unit_name(web=web)
    if platform == "macos":
        target = agent_plist_path(web=web)
        stop = f"launchctl bootout gui/$(id -u)/{agent_label(web=web)}"
    else:
        if scope == "system" and os.geteuid() != 0 and not os.environ.get(ROOT_ENV):
            raise ConfigError(
                "removing the system service needs root: run it with sudo, or use --user"
            )
        target = system_unit_path(web=web) if scope == "system" else user_unit_path(web=web)
        ctl = _systemctl(scope)
        # "systemctl disable" refuses a unit whose file is gone, so we remove the
        # enablement links ourselves (what disable would do); stopping the running
        # daemon and forgetting the unit is left to the printed command.
        for link in target.parent.glob(f"*.wants/{name}"):
            if link.is_symlink():
                link.unlink()
        stop = f"{ctl} stop {name.removesuffix('.service')} && {ctl} daemon-reload"
    try:
        target.unlink()
    except FileNotFoundError:
        return [Said(f"not installed: {target}")]
    except OSError as exc:
        raise StoreError(f"cannot remove: {exc.strerror}", path=target) from exc
    return [Said(f"removed {target}"), Said("stop the running daemon with:"), Said(f"  {stop}")]


def check_scope(platform: str, scope: str) -> None:
    """Refuse a scope this platform's service cannot be installed in."""
    if platform == "macos" and scope == "system":
        raise ConfigError(
            "a system-wide LaunchDaemon is not installed automatically: see the LaunchDaemon "
            "notes in docs/service.md, or use --user"
        )


def default_workspace_for(scope: str) -> Path | None:
    """The workspace of a scope when none is given (None: the usual default)."""
    return SYSTEM_WORKSPACE if scope == "system" else None


def render_service(
    platform: str, scope: str, *, command: list[str], workspace: Path, web: bool = False
) -> str:
    """The text ``mlupdated service print`` shows: the unit, or the agent's plist."""
    if platform == "macos":
        home = Path.home()
        return render_plist(command=command, workspace=workspace, home=home, web=web).decode()
    kind = "system" if scope == "system" else "user"
    return render_unit(kind, command=command, workspace=workspace, web=web)
