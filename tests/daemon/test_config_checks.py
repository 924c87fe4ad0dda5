"""Config values the running daemon must honour or refuse: ``max_wait_seconds`` with
the real process, and training overrides outside what the model allows."""

from __future__ import annotations

import shutil
import signal
import time

from tests.daemon.conftest import cli, wrong_photos

# The model of these tests allows a learning rate in [0, 1] (tests/helpers).
FORBIDDEN_LEARNING_RATE = 50


def test_max_wait_updates_while_drops_keep_coming(workspace, daemons, tmp_path) -> None:
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=3)
    # The quiet period never ends within the test: only max_wait can trigger.
    workspace.write_config(update={"min_batch": 3, "quiet_seconds": 600, "max_wait_seconds": 3})
    daemon = daemons(workspace).start()

    # Fewer than min_batch: old enough for max_wait, yet no update (max_wait only
    # shortens the quiet period, it does not lower the batch size).
    for photo in photos[:2]:
        shutil.copy2(photo, workspace.corrections / label / photo.name)
        daemon.wait_for(event="correction queued", path=f"corrections/{label}/{photo.name}")
    # The scheduler ticks twice a second: well past max_wait, it would have started.
    time.sleep(3 + 1.5)
    assert not daemon.find(event="update started")

    # The third drop makes the batch; the oldest pending one is past max_wait and the
    # quiet period has not passed, so the trigger is max_wait.
    mark = daemon.mark()
    shutil.copy2(photos[2], workspace.corrections / label / photos[2].name)
    started = daemon.wait_for(event="update started", since=mark, timeout=30)
    assert started["trigger"] == "max_wait"
    assert started["corrections"] == 3
    finished = daemon.wait_for(event="update finished", since=mark, timeout=90)
    assert finished["outcome"] == "promoted", finished.get("reason")
    assert daemon.stop() == 0


def test_overrides_the_model_forbids_are_refused(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    # On SIGHUP: one line naming the key and the allowed range; the old config stays.
    workspace.write_config(update={"learning_rate": FORBIDDEN_LEARNING_RATE})
    mark = daemon.mark()
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_for(event="config not reloaded", since=mark)
    assert "update.learning_rate" in refused["error"]
    assert "range [0.0, 1.0]" in refused["error"]
    assert not daemon.find(event="config reloaded", since=mark)
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0

    # At start-up: the daemon does not start and exits 2 (a configuration error); the
    # error is its last line, and the only one naming the key.
    done = cli("run", "--workspace", str(workspace.root))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("mlupdated: error: ")
    assert "config.toml: update.learning_rate:" in lines[-1]
    assert "range [0.0, 1.0]" in lines[-1]
    assert [line for line in lines if "update.learning_rate" in line] == lines[-1:]
    assert not [line for line in lines if '"event": "ready"' in line]


def test_overrides_are_checked_after_the_store_is_repaired(workspace, daemons) -> None:
    # A kill mid-write can leave current.mlmodel truncated; start-up repairs it from
    # the versions, and the override check must read the repaired model, not fail.
    good = workspace.current_model.read_bytes()
    workspace.current_model.write_bytes(good[: len(good) // 3])
    daemon = daemons(workspace).start()
    assert daemon.find(event="model store repaired")
    assert workspace.current_model.read_bytes() == good
    assert daemon.stop() == 0
