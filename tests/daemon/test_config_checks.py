"""Config values the running daemon must honour: ``max_wait_seconds`` with the real
process."""

from __future__ import annotations

import shutil
import time

from tests.daemon.conftest import wrong_photos


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
