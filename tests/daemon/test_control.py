"""``update-now``, ``pause``, ``resume`` and ``status`` against the running daemon."""

from __future__ import annotations

import shutil

from tests.daemon.conftest import cli, make_photo, status, wrong_photos


def test_pause_update_now_resume_and_status_text(workspace, daemons, tmp_path) -> None:
    # Without a daemon: update-now says so; pause is remembered for the next start.
    done = cli("update-now", "--workspace", str(workspace.root))
    assert done.returncode == 2
    assert "no daemon is running" in done.stderr
    assert cli("pause", "--workspace", str(workspace.root)).returncode == 0

    workspace.write_config(update={"min_batch": 2, "quiet_seconds": 0.5})
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=3)
    daemon = daemons(workspace).start()
    assert daemon.find(event="ready")[0]["paused"] is True
    for photo in photos[:2]:
        shutil.copy2(photo, workspace.corrections / label / photo.name)
    daemon.wait_for(event="correction queued", path=f"corrections/{label}/{photos[1].name}")
    state = status(workspace.root)
    assert state["paused"] is True
    assert state["pending"] == {label: 2}

    # update-now runs even while paused: the owner asked for it explicitly.
    mark = daemon.mark()
    done = cli("update-now", "--workspace", str(workspace.root))
    assert done.returncode == 0, done.stderr
    finished = daemon.wait_for(event="update finished", since=mark, timeout=90)
    assert finished["outcome"] == "promoted", finished.get("reason")

    # Still paused: a new batch waits ...
    shutil.copy2(photos[2], workspace.corrections / label / photos[2].name)
    make_photo(workspace.corrections / label / "again.png", "red", 777)
    daemon.wait_for(event="correction queued", path=f"corrections/{label}/again.png")
    mark = daemon.mark()
    text = cli("status", "--workspace", str(workspace.root))
    assert text.returncode == 0
    assert f"running (pid {daemon.pid}), paused" in text.stdout
    assert "version:   2" in text.stdout
    assert f"pending:   2 ({label} 2)" in text.stdout
    assert not daemon.find(event="update started", since=mark)

    # ... until resumed.
    assert cli("resume", "--workspace", str(workspace.root)).returncode == 0
    daemon.wait_for(event="resumed", since=mark)
    finished = daemon.wait_for(event="update finished", since=mark, timeout=90)
    assert finished["outcome"] in ("promoted", "rejected")
    state = status(workspace.root)
    assert state["paused"] is False
    assert state["next_trigger"] is not None
    assert daemon.stop() == 0
