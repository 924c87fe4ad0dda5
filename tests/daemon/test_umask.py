"""Files the daemon makes are never world-writable, whatever umask it was started with."""

from __future__ import annotations

import shutil
import stat

from tests.daemon.conftest import make_photo, wrong_photos


def test_nothing_the_daemon_makes_is_world_writable_under_umask_0(
    workspace, daemons, tmp_path
) -> None:
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=10)
    # The daemon remakes what is missing: an owner who cleared state/ and inbox/.
    shutil.rmtree(workspace.root / "state")
    shutil.rmtree(workspace.root / "inbox")
    daemon = daemons(workspace).start(umask=0)
    make_photo(workspace.root / "inbox" / "early.png", "red", 998)
    daemon.wait_for(event="inbox: classified", path="inbox/early.png")
    for photo in photos:
        shutil.copy2(photo, workspace.corrections / label / photo.name)
    finished = daemon.wait_for(event="update finished", timeout=90)
    assert finished["outcome"] == "promoted", finished.get("reason")
    assert daemon.stop() == 0
    writable = [
        path.relative_to(workspace.root).as_posix()
        for path in [workspace.root, *workspace.root.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & stat.S_IWOTH
    ]
    assert writable == []
