"""The workspace lock: one holder, a clear refusal, freed when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlupdated.errors import AlreadyRunningError
from mlupdated.service.lock import WorkspaceLock, lock_holder, read_pid

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlupdated.service.lock import WorkspaceLock
    lock = WorkspaceLock(Path(sys.argv[1]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def _hold_in_child(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def test_acquire_writes_pid_and_release_frees(tmp_path: Path) -> None:
    path = tmp_path / "mlupdated.lock"
    lock = WorkspaceLock(path)
    lock.acquire()
    assert read_pid(path) == os.getpid()
    assert lock_holder(path) == os.getpid()
    lock.release()
    assert lock_holder(path) is None
    assert not lock.held


def test_second_holder_is_refused_with_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "mlupdated.lock"
    child = _hold_in_child(path)
    try:
        with pytest.raises(AlreadyRunningError) as info:
            WorkspaceLock(path).acquire()
        assert f"already running (pid {child.pid})" in str(info.value)
        assert lock_holder(path) == child.pid
    finally:
        child.kill()
        child.wait()


def test_kill_9_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "mlupdated.lock"
    child = _hold_in_child(path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # The stale pid is still in the file, but nobody holds the lock.
    assert read_pid(path) == child.pid
    assert lock_holder(path) is None
    with WorkspaceLock(path) as lock:
        assert lock.held
        assert read_pid(path) == os.getpid()


def test_no_lock_file_means_nobody(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "absent.lock") is None
    assert read_pid(tmp_path / "absent.lock") is None


def test_the_workspace_folder_lock_outlives_a_deleted_lock_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = WorkspaceLock(state / "mlupdated.lock", root=tmp_path)
    first.acquire()
    try:
        (state / "mlupdated.lock").unlink()
        # A fresh lock file would be free: the folder's lock is what refuses.
        second = WorkspaceLock(state / "mlupdated.lock", root=tmp_path)
        with pytest.raises(AlreadyRunningError, match="already running"):
            second.acquire()
        assert not second.held
    finally:
        first.release()
    with WorkspaceLock(state / "mlupdated.lock", root=tmp_path) as again:
        assert again.held


def test_lost_names_the_removed_or_replaced_file(tmp_path: Path) -> None:
    lock_file, db = tmp_path / "mlupdated.lock", tmp_path / "mlupdated.db"
    db.write_bytes(b"db")
    with WorkspaceLock(lock_file, root=tmp_path) as lock:
        lock.guard(db)
        assert lock.lost() is None
        replacement = tmp_path / "new.db"
        replacement.write_bytes(b"db")
        os.replace(replacement, db)  # same name and content, another file
        assert lock.lost() == db
    with WorkspaceLock(lock_file, root=tmp_path) as lock:
        lock_file.unlink()
        assert lock.lost() == lock_file
