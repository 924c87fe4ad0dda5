"""People and programs in the workspace while the daemon runs: a file made readable
after it was refused, an inbox that is a symbolic link, ``state/`` deleted under a
running daemon (and a second daemon started then)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from tests.daemon.conftest import DEFAULT_TIMEOUT, make_photo

# Under root, chmod 000 denies nothing: drop the capabilities that bypass file modes.
_NO_DAC = ("--inh-caps", "-dac_override,-dac_read_search")
_NO_DAC_BOUND = ("--bounding-set", "-dac_override,-dac_read_search")


def _deniable_prefix() -> tuple[str, ...]:
    """A command prefix under which the daemon cannot read a mode-000 file."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: root reads any file, whatever its mode")
    return (setpriv, *_NO_DAC, *_NO_DAC_BOUND, "--")


@pytest.mark.parametrize(
    ("observer", "rescan"),
    [("native", 300), ("polling", 2)],
    ids=["native-event", "polling-rescan"],
)
def test_refused_file_is_queued_once_readable(workspace, daemons, observer, rescan) -> None:
    # The chmod itself is the hint (an attribute event) with native events; a polling
    # observer misses a mode change, so there the rescan must notice it.
    workspace.write_config(intake={"observer": observer, "rescan_seconds": rescan})
    daemon = daemons(workspace).start(prefix=_deniable_prefix())
    outside = make_photo(workspace.root.parent / "locked.png", "red", 1)
    outside.chmod(0o000)
    target = workspace.corrections / "Cat" / "locked.png"
    os.replace(outside, target)
    refused = daemon.wait_for(event="not queued: corrections/Cat/locked.png")
    assert "permission denied" in refused["reason"].lower()

    mark = daemon.mark()
    target.chmod(0o644)
    queued = daemon.wait_for(since=mark, event="correction queued: corrections/Cat/locked.png")
    assert queued["label"] == "Cat"
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("top", "observer"),
    [("inbox", "native"), ("corrections", "native"), ("inbox", "polling")],
)
def test_symlinked_top_folder_is_watched(workspace, daemons, tmp_path, top, observer) -> None:
    # A long rescan period: only the observer can bring the photo in promptly.
    workspace.write_config(intake={"observer": observer, "rescan_seconds": 300})
    real = tmp_path / f"synced-{top}"
    shutil.copytree(workspace.root / top, real)
    shutil.rmtree(workspace.root / top)
    (workspace.root / top).symlink_to(real, target_is_directory=True)
    daemon = daemons(workspace).start()
    mark = daemon.mark()
    if top == "inbox":
        make_photo(real / "new.png", "red", 7)
        record = daemon.wait_for(since=mark, event="inbox: classified")
        assert record["path"] == "inbox/new.png", record
    else:
        make_photo(workspace.root / top / "Dog" / "new.png", "red", 7)
        record = daemon.wait_for(since=mark, event="correction queued: corrections/Dog/new.png")
        assert record["label"] == "Dog"
    assert daemon.stop() == 0


def test_state_removed_one_daemon_still_holds_the_workspace(workspace, daemons) -> None:
    first = daemons(workspace).start()
    state = workspace.root / "state"
    # Stopped while state/ goes: it cannot notice yet, so only the lock can keep a
    # second daemon out.
    first.signal(signal.SIGSTOP)
    try:
        shutil.rmtree(state)
        second = daemons(workspace).start(wait_ready=False)
        try:
            code = second.wait_exit(timeout=DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("a second daemon started on the workspace after state/ was removed")
        assert code == 2
        assert "already running" in "\n".join(second.raw)
    finally:
        first.signal(signal.SIGCONT)

    gone = first.wait_for(event="state/ was removed")
    assert gone["level"] == "error"
    assert first.wait_exit() not in (0, 2)  # a failure, which a service manager restarts

    third = daemons(workspace).start()
    assert (state / "mlupdated.db").is_file()
    mark = third.mark()
    make_photo(workspace.corrections / "Dog" / "after.png", "red", 9)
    third.wait_for(since=mark, event="correction queued: corrections/Dog/after.png")
    assert third.stop() == 0
