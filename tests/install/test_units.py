"""The systemd units and the LaunchAgent: what the repository ships and what we render.

Units are read with a small parser and, where ``systemd-analyze`` exists (CI installs
it), verified by systemd itself. ``systemd-analyze verify`` works in a container
without a running systemd: it loads the unit into an offline manager and checks keys,
values, and that ExecStart= names an executable file.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from mlupdated.service.config import DaemonConfig
from mlupdated.service.install import (
    SYSTEM_USER,
    installed_command,
    render_plist,
    render_sysusers,
    render_unit,
)
from unitfile import Unit, parse_unit, parse_unit_file, split_words

REPO = Path(__file__).resolve().parents[2]
SHIPPED_COMMAND = ["/usr/local/bin/mlupdated"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def _one(unit: Unit, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{section}.{key} set {len(values)} times"
    return values[0]


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60, "h": 3600}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def _environment(unit: Unit) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in unit["Service"].get("Environment", []):
        for word in split_words(value):
            key, _, val = word.partition("=")
            env[key] = val
    return env


# --- what the repository ships ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "workspace"),
    [
        ("mlupdated.service", "system", "/var/lib/mlupdated"),
        ("mlupdated-user.service", "user", "%h/mlupdated"),
        ("mlupdated@.service", "template", None),
    ],
)
def test_shipped_units_are_the_rendered_templates(name: str, kind: str, workspace: str | None):
    """systemd/*.service never drift from what `mlupdated service install` writes."""
    shipped = (REPO / "systemd" / name).read_text(encoding="utf-8")
    assert shipped == render_unit(kind, command=SHIPPED_COMMAND, workspace=workspace)


def test_shipped_sysusers_and_plist_are_the_rendered_templates():
    assert (REPO / "systemd" / "mlupdated.sysusers.conf").read_text() == render_sysusers()
    shipped = (REPO / "launchd" / "org.mlupdated.agent.plist").read_bytes()
    rendered = render_plist(
        command=SHIPPED_COMMAND, workspace="/Users/you/mlupdated", home="/Users/you"
    )
    assert shipped == rendered


def test_system_unit_has_the_service_and_hardening_keys():
    unit = parse_unit_file(REPO / "systemd" / "mlupdated.service")
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "User": SYSTEM_USER,
        "StateDirectory": "mlupdated",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "Nice": "10",
        "IOSchedulingClass": "idle",
        "CPUSchedulingPolicy": "batch",
        "RestrictAddressFamilies": "AF_UNIX",
        "LockPersonality": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "KillMode": "mixed",
        "PrivateNetwork": "yes",
    }
    assert {key: _one(unit, "Service", key) for key in expected} == expected
    assert "MemoryMax" in service
    assert _seconds(_one(unit, "Service", "WatchdogSec")) > 0
    assert _environment(unit)["MLUPDATED_WORKSPACE"] == "/var/lib/mlupdated"
    assert split_words(_one(unit, "Service", "ReadWritePaths")) == ["/var/lib/mlupdated"]
    assert split_words(_one(unit, "Service", "ExecStart"))[1:] == [
        "run",
        "--workspace",
        "/var/lib/mlupdated",
    ]
    assert _one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize(
    "name", ["mlupdated.service", "mlupdated-user.service", "mlupdated@.service"]
)
def test_stop_timeout_leaves_room_for_the_daemon_shutdown(name: str):
    """systemd must not SIGKILL the daemon while it still waits for a running update."""
    unit = parse_unit_file(REPO / "systemd" / name)
    stop = _seconds(_one(unit, "Service", "TimeoutStopSec"))
    assert stop > DaemonConfig().shutdown_timeout
    # Exit 2 (configuration error) cannot be fixed by restarting.
    assert "2" in _one(unit, "Service", "RestartPreventExitStatus").split()


def test_user_unit_uses_the_home_specifier_and_no_privileged_sandbox():
    unit = parse_unit_file(REPO / "systemd" / "mlupdated-user.service")
    assert _one(unit, "Service", "Type") == "notify"
    assert "User" not in unit["Service"]
    # Mount namespacing fails in user managers without unprivileged user namespaces.
    assert "ProtectSystem" not in unit["Service"]
    assert _environment(unit)["MLUPDATED_WORKSPACE"] == "%h/mlupdated"
    assert split_words(_one(unit, "Service", "ExecStart"))[-1] == "%h/mlupdated"
    assert _one(unit, "Install", "WantedBy") == "default.target"


def test_template_unit_gives_each_instance_its_own_workspace():
    unit = parse_unit_file(REPO / "systemd" / "mlupdated@.service")
    assert _environment(unit)["MLUPDATED_WORKSPACE"] == "/var/lib/mlupdated/%i"
    assert _one(unit, "Service", "StateDirectory") == "mlupdated/%i"
    assert split_words(_one(unit, "Service", "ExecStart"))[-1] == "/var/lib/mlupdated/%i"


def test_awkward_workspace_paths_survive_quoting():
    workspace = '/srv/photo "sync"/50% $HOME\\x'
    unit = parse_unit(render_unit("system", command=SHIPPED_COMMAND, workspace=workspace))
    assert split_words(_one(unit, "Service", "ExecStart")) == [
        *SHIPPED_COMMAND,
        "run",
        "--workspace",
        workspace,
    ]
    assert split_words(_one(unit, "Service", "ReadWritePaths")) == [workspace]


def test_workspace_under_home_relaxes_protect_home_to_read_only():
    unit = parse_unit(render_unit("system", command=SHIPPED_COMMAND, workspace="/home/ann/ml"))
    assert _one(unit, "Service", "ProtectHome") == "read-only"
    assert split_words(_one(unit, "Service", "ReadWritePaths")) == ["/home/ann/ml"]


# --- systemd's own verdict -------------------------------------------------------------


def _verify(unit_path: Path, *, user: bool, runtime_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="warning", XDG_RUNTIME_DIR=str(runtime_dir))
    args = [SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no"]
    if user:
        # A user manager needs a runtime directory; a temporary one is enough offline.
        args.append("--user")
    return subprocess.run(
        [*args, str(unit_path)], capture_output=True, text=True, env=env, timeout=120
    )


def _complaints(result: subprocess.CompletedProcess, unit_path: Path) -> list[str]:
    # Warnings about our file are prefixed with its path or name; ignore the distro's.
    return [
        line
        for line in result.stderr.splitlines()
        if str(unit_path) in line or unit_path.name in line
    ]


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("kind", "file_name", "user"),
    [
        ("system", "mlupdated.service", False),
        ("user", "mlupdated.service", True),
        ("template", "mlupdated@alice.service", False),
    ],
)
def test_systemd_analyze_accepts_units_rendered_with_the_installed_command(
    tmp_path: Path, kind: str, file_name: str, user: bool
):
    command = installed_command()
    assert Path(command[0]).is_file()
    unit_path = tmp_path / file_name
    workspace = tmp_path / "work space"
    unit_path.write_text(render_unit(kind, command=command, workspace=workspace))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = _verify(unit_path, user=user, runtime_dir=runtime)
    assert result.returncode == 0, result.stderr
    assert _complaints(result, unit_path) == []


@needs_systemd_analyze
def test_systemd_analyze_catches_a_missing_executable(tmp_path: Path):
    """The check has teeth: a unit pointing at a command that is not there fails."""
    unit_path = tmp_path / "mlupdated.service"
    unit_path.write_text(render_unit("system", command=[str(tmp_path / "no-such-mlupdated")]))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = _verify(unit_path, user=False, runtime_dir=runtime)
    assert result.returncode != 0
    assert "no-such-mlupdated" in result.stderr


@needs_systemd_analyze
def test_system_unit_exposure_is_rated_safe_or_ok(tmp_path: Path):
    """systemd's own sandbox review of the system unit (lower is better; 10 = none)."""
    unit_path = tmp_path / "mlupdated.service"
    unit_path.write_text(render_unit("system", command=installed_command()))
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="warning", XDG_RUNTIME_DIR=str(tmp_path))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    verdict = result.stdout.strip().splitlines()[-1]
    assert "Overall exposure level for mlupdated.service" in verdict, result.stdout
    assert verdict.split()[-2] in ("SAFE", "OK"), verdict


# --- the LaunchAgent ---------------------------------------------------------------------


def test_plist_has_the_launchd_keys_with_the_right_types(tmp_path: Path):
    command = installed_command()
    data = render_plist(command=command, workspace=tmp_path / "ws", home=tmp_path)
    plist = plistlib.loads(data)
    assert plist["Label"] == "org.mlupdated.agent"
    assert plist["ProgramArguments"] == [*command, "run", "--workspace", str(tmp_path / "ws")]
    assert Path(plist["ProgramArguments"][0]).is_file()
    assert os.access(plist["ProgramArguments"][0], os.X_OK)
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    assert isinstance(plist["Nice"], int) and plist["Nice"] > 0
    assert isinstance(plist["ExitTimeOut"], int)
    assert plist["ExitTimeOut"] > DaemonConfig().shutdown_timeout
    assert plist["EnvironmentVariables"]["MLUPDATED_WORKSPACE"] == str(tmp_path / "ws")
    logs = tmp_path / "Library" / "Logs" / "mlupdated"
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert isinstance(plist[key], str)
        assert Path(plist[key]).parent == logs


def test_plist_keeps_a_multi_word_command_as_separate_arguments(tmp_path: Path):
    command = ["/usr/bin/python3", "-m", "mlupdated.cli"]
    plist = plistlib.loads(render_plist(command=command, workspace="/w", home="/Users/x"))
    assert plist["ProgramArguments"] == [*command, "run", "--workspace", "/w"]
