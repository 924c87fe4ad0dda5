"""Files as real users and sync tools deliver them: slowly, renamed in, while we were down."""

from __future__ import annotations

import os
import time

from tests.daemon.conftest import make_photo, photo_bytes, status

SLOW_CHUNKS = 8
SLOW_PAUSE = 0.4  # below the stability wait: the file keeps changing until the last chunk


def test_slow_renamed_and_offline_files_are_taken_once(workspace, daemons, tmp_path) -> None:
    workspace.write_config(update={"min_batch": 1000}, intake={"stability_seconds": 1.0})
    daemon = daemons(workspace).start()
    dog = workspace.corrections / "Dog"

    # A sync tool writes under its temporary names, then renames into place.
    (dog / ".syncthing.synced.png.tmp").write_bytes(photo_bytes("red", 1))
    (dog / "partial.png.part").write_bytes(photo_bytes("red", 2))
    time.sleep(1.5)  # longer than the stability wait: the temporaries would be taken now
    os.rename(dog / ".syncthing.synced.png.tmp", dog / "synced.png")
    os.rename(dog / "partial.png.part", dog / "partial.png")

    # A large photo written in small chunks over a few seconds.
    data = photo_bytes("red", 3, size=256)
    step = len(data) // SLOW_CHUNKS + 1
    with open(dog / "slow.png", "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(SLOW_PAUSE)
    complete = daemon.mark()

    for name in ("synced.png", "partial.png", "slow.png"):
        daemon.wait_for(event="correction queued", path=f"corrections/Dog/{name}", timeout=30)
    slow = daemon.find(event="correction queued", path="corrections/Dog/slow.png")
    assert len(slow) == 1
    assert daemon.records.index(slow[0]) >= complete, "taken before it was complete"
    queued = [r["path"] for r in daemon.find(event="correction queued")]
    assert sorted(queued) == [
        f"corrections/Dog/{n}" for n in ("partial.png", "slow.png", "synced.png")
    ]
    assert not daemon.find(event="not queued")
    assert daemon.stop() == 0

    # Dropped while the daemon was down: taken by the start-up sweep; nothing else again.
    make_photo(workspace.corrections / "Cat" / "offline.png", "blue", 4)
    again = daemons(workspace).start()
    again.wait_for(event="correction queued", path="corrections/Cat/offline.png", timeout=30)
    time.sleep(1.0)
    assert [r["path"] for r in again.find(event="correction queued")] == [
        "corrections/Cat/offline.png"
    ]
    state = status(workspace.root)
    assert state["pending"] == {"Cat": 1, "Dog": 3}
    assert again.stop() == 0
