"""``mlupdated service install|uninstall|print --web``: the review page as its own unit
or agent, beside the daemon's, run as a user would in a fake home."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from mlupdated import cli
from mlupdated.errors import ConfigError
from mlupdated.service import install
from mlupdated.service.install import installed_command, render_unit
from unitfile import parse_unit, split_words

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")



def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_install_user_web_writes_a_second_unit_running_mlupdated_web(home: Path, capsys):
    code, out, _ = _run(capsys, "service", "install", "--user", "--web")
    assert code == 0
    unit_dir = home / ".config" / "systemd" / "user"
    unit = unit_dir / "mlupdated-web.service"
    assert not (unit_dir / "mlupdated.service").exists(), "the daemon's unit is separate"
    words = split_words(parse_unit(unit.read_text())["Service"]["ExecStart"][0])
    assert Path(words[0]).is_file()
    assert words[-3:] == ["web", "--workspace", str(home / "mlupdated")]
    lines = [line.strip() for line in out.strip().splitlines()]
    assert lines[0] == f"wrote {unit}"
    assert "systemctl --user enable --now mlupdated-web" in lines
    assert lines[-1] == "its login URL is in its log: journalctl --user -u mlupdated-web.service"
    # Both units side by side; uninstalling the page's leaves the daemon's.
    assert _run(capsys, "service", "install", "--user")[0] == 0
    code, out, _ = _run(capsys, "service", "uninstall", "--user", "--web")
    assert code == 0 and not unit.exists() and (unit_dir / "mlupdated.service").exists()
    assert out.strip().splitlines()[-1].strip() == (
        "systemctl --user stop mlupdated-web && systemctl --user daemon-reload"
    )


def test_system_web_unit_is_sandboxed_to_the_workspace_and_loopback(home: Path, capsys, tmp_path):
    code, out, _ = _run(capsys, "service", "install", "--system", "--web")
    assert code == 0
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "mlupdated-web.service"
    service = parse_unit(unit.read_text())["Service"]
    assert service["User"] == [install.SYSTEM_USER]
    assert split_words(service["ExecStart"][0])[-3:] == ["web", "--workspace", "/var/lib/mlupdated"]
    assert service["ReadWritePaths"] == ["/var/lib/mlupdated"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["IPAddressAllow"] == ["localhost"] and service["IPAddressDeny"] == ["any"]
    assert "AF_INET" in service["RestrictAddressFamilies"][0].split()
    assert "systemctl enable --now mlupdated-web" in out


def test_print_web_on_macos_is_a_second_agent(home: Path, capsys, monkeypatch):
    monkeypatch.setenv(install.PLATFORM_ENV, "macos")
    code, out, _ = _run(capsys, "service", "print", "--web")
    assert code == 0
    plist = plistlib.loads(out.encode())
    assert plist["Label"] == "org.mlupdated.web"
    assert plist["ProgramArguments"][-3:] == ["web", "--workspace", str(home / "mlupdated")]
    code, out, _ = _run(capsys, "service", "install", "--web")
    target = home / "Library" / "LaunchAgents" / "org.mlupdated.web.plist"
    assert code == 0 and target.is_file()
    assert not (home / "Library" / "LaunchAgents" / "org.mlupdated.agent.plist").exists()


REPO = Path(__file__).resolve().parents[2]
SHIPPED_COMMAND = ["/usr/local/bin/mlupdated"]


def test_shipped_web_files_are_the_rendered_templates():
    """systemd/ and launchd/ never drift from what `service install --web` writes."""
    for name, kind, workspace in (
        ("mlupdated-web.service", "system", "/var/lib/mlupdated"),
        ("mlupdated-web-user.service", "user", "%h/mlupdated"),
    ):
        shipped = (REPO / "systemd" / name).read_text(encoding="utf-8")
        assert shipped == render_unit(
            kind, command=SHIPPED_COMMAND, workspace=workspace, web=True
        ), name
    shipped = (REPO / "launchd" / "org.mlupdated.web.plist").read_bytes()
    assert shipped == install.render_plist(
        command=SHIPPED_COMMAND, workspace="/Users/you/mlupdated", home="/Users/you", web=True
    )


def test_the_web_page_has_no_template_unit():
    with pytest.raises(ConfigError, match="no template unit"):
        render_unit("template", command=["/usr/bin/mlupdated"], web=True)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("kind", ["system", "user"])
def test_systemd_analyze_accepts_the_web_units(tmp_path: Path, kind: str):
    unit_path = tmp_path / "mlupdated-web.service"
    unit_path.write_text(
        render_unit(kind, command=installed_command(), workspace=tmp_path / "ws", web=True)
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="warning", XDG_RUNTIME_DIR=str(runtime))
    args = [SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no"]
    if kind == "user":
        args.append("--user")
    result = subprocess.run(
        [*args, str(unit_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if unit_path.name in line] == []
