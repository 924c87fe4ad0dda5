"""``mlupdated service install|uninstall|print``, run as a user would, in a fake home."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

import pytest
from mlupdated import cli
from mlupdated.service import install
from unitfile import parse_unit, split_words


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _exec_start(text: str) -> list[str]:
    return split_words(parse_unit(text)["Service"]["ExecStart"][0])


def test_print_renders_a_unit_that_points_at_existing_paths(home: Path, capsys):
    workspace = home / "photos ws"
    workspace.mkdir()
    code, out, _ = _run(capsys, "service", "print", "--user", "--workspace", str(workspace))
    assert code == 0
    words = _exec_start(out)
    assert Path(words[0]).is_file() and os.access(words[0], os.X_OK)
    assert words[-3:] == ["run", "--workspace", str(workspace)]
    assert Path(words[-1]).is_dir()


def test_print_on_macos_renders_the_plist(home: Path, capsys, monkeypatch):
    monkeypatch.setenv(install.PLATFORM_ENV, "macos")
    code, out, _ = _run(capsys, "service", "print")
    assert code == 0
    plist = plistlib.loads(out.encode())
    assert Path(plist["ProgramArguments"][0]).is_file()
    # Default workspace: ~/mlupdated, absolute because launchd does not expand "~".
    assert plist["ProgramArguments"][-1] == str(home / "mlupdated")


def test_relative_workspace_is_made_absolute(home: Path, capsys, monkeypatch):
    monkeypatch.chdir(home)
    code, out, _ = _run(capsys, "service", "print", "--user", "--workspace", "ws")
    assert code == 0
    assert _exec_start(out)[-1] == str(home / "ws")


def test_install_user_writes_the_unit_and_prints_one_enable_command(home: Path, capsys):
    code, out, _ = _run(capsys, "service", "install", "--user")
    assert code == 0
    unit = home / ".config" / "systemd" / "user" / "mlupdated.service"
    assert _exec_start(unit.read_text())[-1] == str(home / "mlupdated")
    lines = out.strip().splitlines()
    assert lines[0] == f"wrote {unit}"
    assert lines[-1].strip() == "systemctl --user enable --now mlupdated"

    # Installing again changes nothing and says so.
    code, out, _ = _run(capsys, "service", "install", "--user")
    assert out.splitlines()[0] == f"unchanged {unit}"


def test_install_user_honours_xdg_config_home(home: Path, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _run(capsys, "service", "install", "--user")[0] == 0
    assert (tmp_path / "xdg" / "systemd" / "user" / "mlupdated.service").is_file()


def test_reinstall_with_another_workspace_asks_for_a_reload(home: Path, capsys):
    _run(capsys, "service", "install", "--user")
    code, out, _ = _run(capsys, "service", "install", "--user", "--workspace", str(home / "b"))
    assert code == 0
    assert out.splitlines()[0].startswith("replaced ")
    assert "systemctl --user daemon-reload" in out.splitlines()[-1]


def test_uninstall_removes_the_unit_and_its_enablement_link(home: Path, capsys):
    _run(capsys, "service", "install", "--user")
    unit_dir = home / ".config" / "systemd" / "user"
    wants = unit_dir / "default.target.wants"
    wants.mkdir()
    # What "systemctl --user enable" leaves behind.
    (wants / "mlupdated.service").symlink_to(unit_dir / "mlupdated.service")
    code, out, _ = _run(capsys, "service", "uninstall", "--user")
    assert code == 0
    assert not (unit_dir / "mlupdated.service").exists()
    assert not (wants / "mlupdated.service").is_symlink()
    assert out.splitlines()[-1].strip() == (
        "systemctl --user stop mlupdated && systemctl --user daemon-reload"
    )
    code, out, _ = _run(capsys, "service", "uninstall", "--user")
    assert code == 0 and out.startswith("not installed")


def test_install_system_writes_unit_and_sysusers_under_the_root(home: Path, capsys, tmp_path):
    code, out, _ = _run(capsys, "service", "install", "--system")
    assert code == 0
    root = tmp_path / "root"
    unit = root / "etc" / "systemd" / "system" / "mlupdated.service"
    parsed = parse_unit(unit.read_text())
    assert parsed["Service"]["User"] == [install.SYSTEM_USER]
    assert _exec_start(unit.read_text())[-1] == "/var/lib/mlupdated"
    sysusers = root / "etc" / "sysusers.d" / "mlupdated.conf"
    entries = [line.split() for line in sysusers.read_text().splitlines() if line[:1] != "#"]
    assert [entry[:2] for entry in entries] == [["u", install.SYSTEM_USER]]
    enable = out.strip().splitlines()[-1].strip()
    assert enable.endswith("systemctl enable --now mlupdated")
    # The service user does not exist on a fresh machine: the line creates it first.
    assert enable.startswith("systemd-sysusers && ")


def test_install_system_without_root_is_a_clear_error(home: Path, capsys, monkeypatch):
    monkeypatch.delenv(install.ROOT_ENV)
    monkeypatch.setattr(install.os, "geteuid", lambda: 1000)
    code, _, err = _run(capsys, "service", "install", "--system")
    assert code == 2
    assert err.strip() == (
        "mlupdated: error: installing the system service needs root: "
        "run it with sudo, or use --user"
    )


def test_install_on_macos_writes_the_agent_and_its_log_folder(home: Path, capsys, monkeypatch):
    monkeypatch.setenv(install.PLATFORM_ENV, "macos")
    code, out, _ = _run(capsys, "service", "install")
    assert code == 0
    target = home / "Library" / "LaunchAgents" / "org.mlupdated.agent.plist"
    plist = plistlib.loads(target.read_bytes())
    assert Path(plist["StandardErrorPath"]).parent.is_dir()
    assert out.strip().splitlines()[-1].strip() == f"launchctl bootstrap gui/$(id -u) {target}"
    code, out, _ = _run(capsys, "service", "uninstall")
    assert code == 0 and not target.exists()
    assert (
        out.strip().splitlines()[-1].strip() == "launchctl bootout gui/$(id -u)/org.mlupdated.agent"
    )


def test_system_scope_on_macos_points_to_the_notes(home: Path, capsys, monkeypatch):
    monkeypatch.setenv(install.PLATFORM_ENV, "macos")
    code, _, err = _run(capsys, "service", "install", "--system")
    assert code == 2
    assert "LaunchDaemon" in err


def test_installed_command_prefers_the_script_we_were_started_as(tmp_path: Path):
    script = tmp_path / "bin" / "mlupdated"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert install.installed_command(argv0=str(script)) == [str(script)]


def test_install_system_with_a_new_workspace_prints_how_to_create_it(home: Path, capsys, tmp_path):
    workspace = tmp_path / "srv" / "photo ml"
    code, out, _ = _run(capsys, "service", "install", "--system", "--workspace", str(workspace))
    assert code == 0
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "mlupdated.service"
    parsed = parse_unit(unit.read_text())
    assert split_words(parsed["Service"]["ReadWritePaths"][0]) == [str(workspace)]
    enable = out.strip().splitlines()[-1]
    # Outside StateDirectory= the service user cannot create it under ProtectSystem=strict.
    assert f"install -d -o mlupdated -g mlupdated '{workspace}'" in enable
    assert enable.endswith("systemctl enable --now mlupdated")
