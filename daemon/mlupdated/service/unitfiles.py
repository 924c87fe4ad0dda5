"""The service files: the systemd units and the launchd agent, rendered from the
templates shipped as package data, with the absolute paths of the installed
``mlupdated`` command and of the workspace filled in (services start without a login
shell, so nothing may rely on ``PATH`` or ``~``); where they go on this machine.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import string
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# Tests (and curious users) render the other platform's file with this variable.
PLATFORM_ENV = "MLUPDATED_SERVICE_PLATFORM"
# Prefix for the system-wide paths (/etc/...), like ``systemctl --root``: lets tests
# exercise ``install --system`` without touching the machine.
ROOT_ENV = "MLUPDATED_SERVICE_ROOT"
WORKSPACE_ENV = "MLUPDATED_WORKSPACE"

UNIT_NAME = "mlupdated.service"
# The review page (``mlupdated web``) as a second unit or agent, beside the daemon's.
WEB_UNIT_NAME = "mlupdated-web.service"
WEB_AGENT_LABEL = "org.mlupdated.web"
TEMPLATE_UNIT_NAME = "mlupdated@.service"
AGENT_LABEL = "org.mlupdated.agent"
SYSTEM_USER = "mlupdated"
SYSTEM_WORKSPACE = Path("/var/lib/mlupdated")
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSUSERS_FILE = Path("/etc/sysusers.d/mlupdated.conf")
USER_WORKSPACE_NAME = "mlupdated"

UNIT_KINDS = ("system", "user", "template")
_TEMPLATE_FILES = {
    "system": "system.service",
    "user": "user.service",
    "template": "template.service",
    "sysusers": "sysusers.conf",
    "agent": "agent.plist",
    "web-system": "web-system.service",
    "web-user": "web-user.service",
    "web-agent": "web-agent.plist",
}
# A system service cannot see into home directories unless ProtectHome= allows it.
_HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
# The workspace of one instance of mlupdated@.service (systemd specifier %i).
TEMPLATE_WORKSPACE = "/var/lib/mlupdated/%i"


# --- the command and the paths ------------------------------------------------------


def installed_command(*, argv0: str | None = None) -> list[str]:
    """The absolute command line that starts this installation of mlupdated.

    In order: the script we were started as, the script next to the running
    interpreter (a virtual environment's ``bin/``), ``mlupdated`` on ``PATH``, and
    finally ``python -m mlupdated.cli`` with this interpreter.
    """
    first = Path(sys.argv[0] if argv0 is None else argv0)
    candidates = [first] if first.name == "mlupdated" else []
    # sys.executable is not resolved: a venv's bin/python is a symlink to the base
    # interpreter, and the venv's own bin/ is where its scripts live.
    candidates.append(Path(sys.executable).parent / "mlupdated")
    found = shutil.which("mlupdated")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "mlupdated.cli"]


def current_platform() -> str:
    """``"linux"`` or ``"macos"`` (``$MLUPDATED_SERVICE_PLATFORM`` overrides)."""
    forced = os.environ.get(PLATFORM_ENV)
    if forced:
        if forced not in ("linux", "macos"):
            raise ConfigError(
                f"{PLATFORM_ENV}: expected 'linux' or 'macos', got {forced!r}", key=PLATFORM_ENV
            )
        return forced
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    raise ConfigError(
        f"services are supported on Linux (systemd) and macOS (launchd), not {sys.platform}"
    )


def _system_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/")


def under_root(path: Path) -> Path:
    """``path`` under the system root (``$MLUPDATED_SERVICE_ROOT`` in tests)."""
    return _system_root() / path.relative_to("/")


def unit_name(*, web: bool = False) -> str:
    """The daemon's unit name, or the web page's."""
    return WEB_UNIT_NAME if web else UNIT_NAME


def agent_label(*, web: bool = False) -> str:
    """The daemon's LaunchAgent label, or the web page's."""
    return WEB_AGENT_LABEL if web else AGENT_LABEL


def user_unit_path(*, web: bool = False) -> Path:
    """Where the per-user unit goes: ``$XDG_CONFIG_HOME/systemd/user/mlupdated.service``."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "systemd" / "user" / unit_name(web=web)


def system_unit_path(*, web: bool = False) -> Path:
    """Where the system unit goes: ``/etc/systemd/system/mlupdated.service``."""
    return under_root(SYSTEM_UNIT_DIR / unit_name(web=web))


def agent_plist_path(*, home: Path | None = None, web: bool = False) -> Path:
    """Where the LaunchAgent goes: ``~/Library/LaunchAgents/org.mlupdated.agent.plist``."""
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{agent_label(web=web)}.plist"


def agent_log_dir(*, home: Path | None = None) -> Path:
    """Where launchd writes the agent's output: ``~/Library/Logs/mlupdated``."""
    return (home or Path.home()) / "Library" / "Logs" / "mlupdated"


# --- rendering ------------------------------------------------------------------------


def _template(name: str) -> str:
    return (resources.files(__package__) / "templates" / _TEMPLATE_FILES[name]).read_text(
        encoding="utf-8"
    )


def _unit_word(value: str, *, in_command: bool) -> str:
    """One word for a unit file: specifiers and variables escaped, quoted if needed."""
    if "\n" in value or "\r" in value:
        raise ConfigError(f"a path in a unit file cannot contain a line break: {value!r}")
    escaped = value.replace("%", "%%")
    if in_command:
        escaped = escaped.replace("$", "$$")
    if any(c in escaped for c in " \t\"'\\;"):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _is_specifier_path(text: str) -> bool:
    # A workspace written with a systemd specifier (%h: the user's home, %i: the
    # instance) is kept as it is, so that one file serves every user or instance.
    return text.startswith("%h/") or text == TEMPLATE_WORKSPACE


def _workspace_word(workspace: str | Path, *, in_command: bool) -> str:
    text = str(workspace)
    if _is_specifier_path(text):
        return text
    return _unit_word(text, in_command=in_command)


def _protect_home(paths: Sequence[Path]) -> str:
    """``yes`` unless the workspace or the command lives under a home directory."""
    for path in paths:
        if any(path == root or root in path.parents for root in _HOME_ROOTS):
            return "read-only"
    return "yes"


def render_unit(
    kind: str,
    *,
    command: Sequence[str],
    workspace: str | Path | None = None,
    user: str = SYSTEM_USER,
    web: bool = False,
) -> str:
    """The text of a systemd unit (``web``: the review page's, running ``mlupdated web``).

    ``kind`` is ``"system"`` (``mlupdated.service`` run as ``user``), ``"user"`` (a
    per-user unit) or ``"template"`` (``mlupdated@.service``, workspace
    ``/var/lib/mlupdated/<instance>``, ``workspace`` ignored). ``command`` is the
    absolute command line of mlupdated; ``workspace`` an absolute path, or a path
    starting with the systemd specifier ``%h/``.
    """
    if kind not in UNIT_KINDS:
        raise ConfigError(f"unknown unit kind {kind!r} (expected one of {', '.join(UNIT_KINDS)})")
    if not command:
        raise ConfigError("the mlupdated command line is empty")
    if web and kind == "template":
        raise ConfigError("the web page has no template unit; install it --user or --system")
    if kind == "template":
        workspace = TEMPLATE_WORKSPACE
    elif workspace is None:
        workspace = SYSTEM_WORKSPACE if kind == "system" else f"%h/{USER_WORKSPACE_NAME}"
    text = str(workspace)
    if not (text.startswith("/") or text.startswith("%h/")):
        raise ConfigError(f"the workspace must be an absolute path, got {text!r}")
    words = [_unit_word(part, in_command=True) for part in command]
    words += ["web" if web else "run", "--workspace", _workspace_word(workspace, in_command=True)]
    env = f"{WORKSPACE_ENV}={text}"
    if not _is_specifier_path(text):
        env = _unit_word(env, in_command=False)
    fields = {
        "exec_start": " ".join(words),
        "workspace_env": env,
        "user": user,
        "protect_home": _protect_home([Path(text), Path(command[0])]),
        "read_write_paths": _workspace_word(workspace, in_command=False),
    }
    return string.Template(_template(f"web-{kind}" if web else kind)).substitute(fields)


def render_sysusers(*, user: str = SYSTEM_USER) -> str:
    """A ``sysusers.d`` line that creates the system user of the system unit."""
    return string.Template(_template("sysusers")).substitute(user=user)


def _fill(value: Any, fields: dict[str, str], command: Sequence[str]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, fields, command) for key, item in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            # The program may be one path or "python -m mlupdated.cli".
            out.extend(command if item == "${program}" else [_fill(item, fields, command)])
        return out
    if isinstance(value, str):
        return string.Template(value).substitute(fields)
    return value


def render_plist(
    *, command: Sequence[str], workspace: str | Path, home: str | Path, web: bool = False
) -> bytes:
    """The LaunchAgent property list (XML bytes) for ``command run --workspace DIR``.

    ``workspace`` and ``home`` must be absolute: launchd expands neither ``~`` nor
    environment variables. Logs go to ``HOME/Library/Logs/mlupdated/``.
    """
    for name, value in (("workspace", workspace), ("home", home), ("command", command[0])):
        if not Path(value).is_absolute():
            raise ConfigError(f"the {name} must be an absolute path, got {str(value)!r}")
    template = plistlib.loads(_template("web-agent" if web else "agent").encode("utf-8"))
    fields = {"workspace": str(workspace), "log_dir": str(agent_log_dir(home=Path(home)))}
    return plistlib.dumps(_fill(template, fields, list(command)), sort_keys=False)
