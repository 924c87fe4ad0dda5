"""The daemon at rest: the inbox drops its model when no photo came for a while, and
loads it again for the next one."""

from __future__ import annotations

from tests.daemon.conftest import make_photo


def test_idle_inbox_releases_its_model_and_reloads_it(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    make_photo(workspace.root / "inbox" / "first.png", "red", 1)
    first = daemon.wait_for(event="inbox: classified", path="inbox/first.png")
    mark = daemon.mark()
    released = daemon.wait_for(since=mark, event="inbox: model released while idle")
    assert released["version"] == first["version"]
    make_photo(workspace.root / "inbox" / "second.png", "red", 2)
    second = daemon.wait_for(since=mark, event="inbox: classified", path="inbox/second.png")
    # The same kind of photo, the same model: the reloaded model gives the same answer.
    assert second["label"] == first["label"]
    assert daemon.stop() == 0
