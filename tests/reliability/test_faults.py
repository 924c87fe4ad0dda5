"""Faults from the kernel and from other programs, against the real daemon: each ends in
a clear log line, no lost data, and recovery once the fault is gone."""

from __future__ import annotations

import hashlib
import random
import re
import time
from shutil import copytree, rmtree

import pytest

from tests.daemon.conftest import make_photo, status
from tests.reliability.faults import (
    can_mount_tmpfs,
    database_locked,
    fill,
    remount,
    tmpfs_over,
)
from tests.reliability.harness import (
    corrections_by_sha,
    make_workspace,
    model_problems,
    queue_problems,
    store_problems,
    temp_files,
    write_figures,
)

pytestmark = pytest.mark.slow

FAST = {
    "update": {"min_batch": 3, "quiet_seconds": 1.0, "epochs": 3},
    "gate": {"enabled": False},
}
needs_mount = pytest.mark.skipif(
    not can_mount_tmpfs(), reason="mounting a tmpfs needs root or CAP_SYS_ADMIN"
)
TRIED: dict[str, str] = {}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drop(ws, label: str, count: int, *, start: int) -> dict[str, str]:
    kind = "red" if label == "Cat" else "blue"
    dropped = {}
    for i in range(start, start + count):
        path = make_photo(ws.corrections / label / f"f{i}.png", kind, i)
        dropped[_digest(path)] = label
    return dropped


def _healthy(ws, dropped, probe) -> None:
    assert model_problems(ws.root, probe) == []
    assert store_problems(ws.root) == []
    assert queue_problems(ws.root, dropped) == []


@needs_mount
def test_disk_full_while_writing_a_version(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, **FAST)
    before = _digest(ws.current_model)
    with tmpfs_over(ws.root / "models" / "versions", size="256k") as versions:
        filler = fill(versions)
        daemon = daemons(ws).start()
        dropped = _drop(ws, "Cat", 3, start=0)
        failed = daemon.wait_for(event="update finished", outcome="failed", timeout=90)
        assert "disk full" in failed["reason"], failed
        assert _digest(ws.current_model) == before  # the old model stays current
        assert status(ws.root)["version"] == 1
        assert {r[2] for r in corrections_by_sha(ws.root).values()} == {"pending"}
        assert not list(versions.glob(".mlupdated-tmp-*"))
        filler.unlink()  # space returns: the back-off retry goes through
        done = daemon.wait_for(event="update finished", outcome="promoted", timeout=90)
        assert done["version"] == 2
        assert daemon.stop() == 0
        _healthy(ws, dropped, next(ws.corrections.rglob("*.png")))
        assert {r[2] for r in corrections_by_sha(ws.root).values()} == {"trained"}
    TRIED["disk full: version write"] = failed["reason"]


@needs_mount
def test_disk_full_while_writing_the_database(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, **FAST)
    with tmpfs_over(ws.root / "state", size="2m") as state:
        daemon = daemons(ws).start()
        filler = fill(state)
        dropped = _drop(ws, "Dog", 3, start=10)
        record = daemon.wait_for(event="cannot queue", timeout=60)
        assert "disk full" in record["error"], record
        assert daemon.proc.poll() is None
        filler.unlink()
        # Nothing was lost: the files are queued once space returns, then trained.
        done = daemon.wait_for(event="update finished", outcome="promoted", timeout=120)
        assert done["version"] == 2
        assert daemon.stop() == 0
        _healthy(ws, dropped, next(ws.corrections.rglob("*.png")))
        assert set(corrections_by_sha(ws.root)) == set(dropped)
    TRIED["disk full: database write"] = record["error"]


@needs_mount
def test_read_only_workspace(tmp_path, small_model, daemons) -> None:
    root = tmp_path / "ws"
    config = {**FAST, "update": {**FAST["update"], "quiet_seconds": 3.0}}
    with tmpfs_over(root, size="16m"):
        ws = make_workspace(root, small_model, **config)
        # Read-only from the start: the daemon refuses in one line, it does not crash.
        remount(root, read_only=True)
        refused = daemons(ws).start(wait_ready=False)
        code = refused.wait_exit(60)
        assert code != 0
        assert not any("Traceback" in line for line in refused.raw), refused.raw[-5:]
        remount(root, read_only=False)
        # Read-only under a running daemon, between the drop and the update. (A file
        # system with files open for writing cannot be remounted read-only, and the
        # database is always open: the models folder gets its own mount.)
        with tmpfs_over(root / "models", size="4m") as models:
            daemon = daemons(ws).start()
            dropped = _drop(ws, "Cat", 3, start=20)
            for i in range(20, 23):
                daemon.wait_for(event="correction queued", path=f"corrections/Cat/f{i}.png")
            remount(models, read_only=True)
            failed = daemon.wait_for(event="update finished", outcome="failed", timeout=90)
            assert "read-only" in failed["reason"].lower(), failed
            assert daemon.proc.poll() is None
            assert {r[2] for r in corrections_by_sha(ws.root).values()} == {"pending"}
            remount(models, read_only=False)
            done = daemon.wait_for(event="update finished", outcome="promoted", timeout=120)
            assert done["version"] == 2
            assert daemon.stop() == 0
            _healthy(ws, dropped, next(ws.corrections.rglob("*.png")))
    TRIED["read-only workspace at start"] = f"exit {code}"
    TRIED["read-only workspace during an update"] = failed["reason"]


def test_database_locked_by_another_process(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, **FAST)
    daemon = daemons(ws).start()
    with database_locked(ws.root / "state" / "mlupdated.db"):
        dropped = _drop(ws, "Dog", 3, start=30)
        record = daemon.wait_for(event="cannot queue", timeout=60)
        assert "locked" in record["error"], record
        assert daemon.proc.poll() is None
    done = daemon.wait_for(event="update finished", outcome="promoted", timeout=120)
    assert done["version"] == 2
    assert daemon.stop() == 0
    _healthy(ws, dropped, next(ws.corrections.rglob("*.png")))
    assert set(corrections_by_sha(ws.root)) == set(dropped)
    TRIED["database locked"] = record["error"]


def test_files_deleted_between_event_and_read(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, update={"min_batch": 1000})
    daemon = daemons(ws).start()
    rng = random.Random(5)
    kept = {}
    for i in range(40):
        path = make_photo(ws.corrections / "Cat" / f"d{i}.png", "red", 100 + i)
        if i % 4 == 0:
            kept[_digest(path)] = "Cat"
        else:
            time.sleep(rng.uniform(0.0, 0.3))  # inside the stability wait, or just after
            path.unlink()
    for i in range(0, 40, 4):
        daemon.wait_for(event="correction queued", path=f"corrections/Cat/d{i}.png")
    time.sleep(3)  # a rescan and the stability wait of the last deletions
    rows = corrections_by_sha(ws.root)
    # A deleted file either never became a correction or was retracted.
    assert {row[2] for sha, row in rows.items() if sha not in kept} <= {"retracted"}
    pending = {sha for sha, row in corrections_by_sha(ws.root).items() if row[2] == "pending"}
    assert pending == set(kept)
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    TRIED["files deleted between event and read"] = f"{40 - len(kept)} deleted, {len(kept)} kept"


def test_label_folder_deleted_while_watched(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, update={"min_batch": 1000})
    daemon = daemons(ws).start()
    dropped = _drop(ws, "Dog", 3, start=40)
    for i in range(40, 43):
        daemon.wait_for(event="correction queued", path=f"corrections/Dog/f{i}.png")
    # The folder goes away at once (moved out, or a share unmounted), as a whole.
    saved = tmp_path / "saved-Dog"
    (ws.corrections / "Dog").rename(saved)
    record = daemon.wait_for(event="source unavailable", timeout=60)
    assert record["path"].endswith("Dog")
    # Nothing under it is treated as removed.
    time.sleep(3)
    rows = corrections_by_sha(ws.root)
    assert {rows[sha][2] for sha in dropped} == {"pending"}
    assert status(ws.root)["pending"].get("Dog") == 3
    saved.rename(ws.corrections / "Dog")
    daemon.wait_for(event="source available again", timeout=60)
    more = _drop(ws, "Dog", 1, start=43)
    daemon.wait_for(event="correction queued", path="corrections/Dog/f43.png")
    assert {r[2] for r in corrections_by_sha(ws.root).values()} == {"pending"}
    assert set(corrections_by_sha(ws.root)) == set(dropped) | set(more)
    assert daemon.stop() == 0
    assert temp_files(ws.root) == set()
    TRIED["label folder deleted while watched"] = record["event"]


def test_label_folder_removed_file_by_file(tmp_path, small_model, daemons) -> None:
    """``rm -rf`` of a label folder: files vanish one by one, then the folder. Whether
    the daemon reads that as removals (retract) or as a missing source depends on event
    timing; either way each file gets a log line, and putting the folder back makes all
    of them pending again (nothing is lost for good)."""
    ws = make_workspace(tmp_path / "ws", small_model, update={"min_batch": 1000})
    daemon = daemons(ws).start()
    dropped = _drop(ws, "Dog", 3, start=50)
    for i in range(50, 53):
        daemon.wait_for(event="correction queued", path=f"corrections/Dog/f{i}.png")
    saved = tmp_path / "saved-Dog"
    copytree(ws.corrections / "Dog", saved)
    since = daemon.mark()
    rmtree(ws.corrections / "Dog")
    for i in range(50, 53):
        path = f"corrections/Dog/f{i}.png"
        daemon.wait_for(
            since=since,
            timeout=60,
            where=lambda r, path=path: (
                r.get("path") in (path, "corrections/Dog")
                and ("retracted" in r["event"] or "unavailable" in r["event"])
            ),
        )
    copytree(saved, ws.corrections / "Dog")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = corrections_by_sha(ws.root)
        if all(rows.get(sha, (0, "", ""))[2] == "pending" for sha in dropped):
            break
        time.sleep(0.5)
    assert {corrections_by_sha(ws.root)[sha][2] for sha in dropped} == {"pending"}
    assert status(ws.root)["pending"].get("Dog") == 3
    assert daemon.stop() == 0
    TRIED["label folder removed file by file"] = "recovered when put back"


def test_zz_figures() -> None:
    """Write what the fault tests above tried (runs last in this module)."""
    # Log lines name files by absolute path; the summary keeps them workspace-relative.
    lines = {name: re.sub(r"/\S*/ws/", "WORKSPACE/", text) for name, text in TRIED.items()}
    write_figures("faults", {"tried": len(TRIED), "log_lines": lines})
