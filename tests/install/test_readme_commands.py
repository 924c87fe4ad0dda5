"""The README's two commands, run as a newcomer would, in a fresh virtual environment.

The commands are read from README.md itself ("Quick start"), so editing them there
without keeping them working breaks this test. They run verbatim through bash with a
fresh HOME; the first installs the repository (a copy, so the build leaves nothing in
the work tree), the second must start the daemon on the bundled default model, create
the workspace, and report READY=1 to the notify socket; SIGTERM must stop it with 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CI_SCRIPT = REPO / ".ci" / "run"
# Upper bounds for a loaded 2-core CI machine, not expectations.
INSTALL_TIMEOUT = 600
READY_TIMEOUT = 300.0
STOP_TIMEOUT = 120.0
WHERE_IMPORTED = "import mlupdated; print(mlupdated.__file__)"
# What a source checkout holds that an installation must not need.
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "tests", "bench",
)  # fmt: skip


def _code_block_after(text: str, heading: str) -> list[str]:
    """The non-empty lines of the first fenced code block under ``## heading``."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    assert match, f"README.md has no code block under '## {heading}'"
    return [line.strip() for line in match.group(2).splitlines() if line.strip()]


def readme_quick_start() -> list[str]:
    return _code_block_after(README.read_text(encoding="utf-8"), "Quick start")


def readme_test_command() -> list[str]:
    return _code_block_after(README.read_text(encoding="utf-8"), "Running the tests")


def test_readme_has_exactly_two_setup_commands_and_one_test_command():
    install, run = readme_quick_start()
    assert shlex.split(install)[:2] == ["pip", "install"]
    assert shlex.split(run)[:2] == ["mlupdated", "run"]
    assert len(readme_test_command()) == 1


def test_readme_test_command_is_what_ci_runs():
    """CI's last step is the README's test command (after its own install)."""
    (line,) = readme_test_command()
    last_step = line.split("&&")[-1].strip()
    ci_steps = [
        step.strip()
        for step in CI_SCRIPT.read_text().splitlines()
        if step.strip() and not step.lstrip().startswith("#")
    ]
    assert ci_steps[-1] == last_step


def _make_venv(target: Path) -> Path:
    """A fresh virtual environment whose dependencies resolve from this one, offline.

    ``--system-site-packages`` alone reaches the *base* interpreter's packages, not
    those of the environment running the tests (CI runs inside a venv), so the running
    environment's site directories are appended with a ``.pth`` file. Plain paths in a
    ``.pth`` do not run that environment's own ``.pth`` hooks, so its editable install
    of mlupdated stays invisible: only the fresh installation can be imported.
    """
    venv.EnvBuilder(system_site_packages=True, with_pip=True, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Python 3.11's ensurepip also installs an old setuptools into the new venv, which
    # would shadow the build backend the running environment has (and the project's
    # metadata needs): remove it so the build uses the running environment's. This must
    # happen before the .pth below exists, or pip could find and remove *that* one.
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"],
        capture_output=True,
        check=True,
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_parent_env.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return target / "bin"


@pytest.mark.slow
def test_readme_commands_install_and_run_the_daemon(tmp_path: Path):
    install_line, run_line = readme_quick_start()
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    bin_dir = _make_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "MLUPDATED_WORKSPACE"))
    }
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(bin_dir.parent),
        # Offline and quick: dependencies come from the environment above (see
        # _make_venv), so pip installs only the project itself, with the setuptools
        # that is already installed. PIP_NO_BUILD_ISOLATION is inverted: 0 = off.
        PIP_NO_INDEX="1",
        PIP_NO_DEPS="1",
        PIP_NO_BUILD_ISOLATION="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )

    installed = subprocess.run(
        ["bash", "-c", install_line],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = subprocess.run(
        ["bash", "-c", f"command -v mlupdated; python -c {shlex.quote(WHERE_IMPORTED)}"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0] == str(bin_dir / "mlupdated")
    assert Path(where[1]).is_relative_to(bin_dir.parent), "mlupdated imported from elsewhere"
    # The unit templates are package data: an installed copy (not the source tree) must
    # render a unit that starts this installation's command.
    unit = subprocess.run(
        ["bash", "-c", "mlupdated service print --user"],
        cwd=home,
        env=dict(env, MLUPDATED_SERVICE_PLATFORM="linux"),
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stderr
    assert f"ExecStart={bin_dir / 'mlupdated'} run --workspace {home / 'mlupdated'}" in unit.stdout

    # AF_UNIX socket paths are limited to ~100 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="mlreadme-"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(scratch / "notify.sock"))
    listener.settimeout(0.5)
    log_path = tmp_path / "daemon.log"
    try:
        with open(log_path, "wb") as log:
            # exec: SIGTERM must reach the daemon itself, not a shell around it.
            daemon = subprocess.Popen(
                ["bash", "-c", f"exec {run_line}"],
                cwd=home,
                env=dict(env, NOTIFY_SOCKET=str(scratch / "notify.sock")),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            ready = False
            deadline = time.monotonic() + READY_TIMEOUT
            while not ready and time.monotonic() < deadline and daemon.poll() is None:
                try:
                    ready = "READY=1" in listener.recv(4096).decode().split("\n")
                except TimeoutError:
                    pass
            log_text = log_path.read_text(errors="replace")
            assert ready, f"no READY=1 (exit code {daemon.poll()}):\n{log_text[-4000:]}"
            # The README's workspace is under "~", which bash expanded to our HOME.
            workspace = home / Path(shlex.split(run_line)[-1]).relative_to("~")
            assert (workspace / "models" / "current.mlmodel").is_file()
            assert (workspace / "config.toml").is_file()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=STOP_TIMEOUT)
            assert code == 0, log_path.read_text(errors="replace")[-4000:]
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    finally:
        listener.close()
        shutil.rmtree(scratch, ignore_errors=True)
