"""A close after writing ends the stability wait (Linux's inotify reports it), and only
for a file that decodes: a half-written file is never taken."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys

import pytest

from tests.daemon.conftest import photo_bytes

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="close-after-write events are Linux's"
)

# Far longer than any wait below: only the close event can end a file's wait.
FOREVER = 3600


def _queued_sha(root, rel: str) -> str | None:
    conn = sqlite3.connect(f"file:{root / 'state' / 'mlupdated.db'}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT c.sha256 FROM corrections c JOIN correction_paths p "
            "ON p.correction_id = c.id WHERE p.path = ?",
            (rel,),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def _write(path, data: bytes, *, append: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["in-place", "renamed-in"])
def test_close_after_write_ends_the_wait(workspace, daemons, how) -> None:
    workspace.write_config(intake={"observer": "native", "stability_seconds": FOREVER})
    daemon = daemons(workspace).start()
    target = workspace.corrections / "Dog" / "closed.png"
    data = photo_bytes("red", 3)
    if how == "in-place":
        _write(target, data)
    else:  # as sync tools do: a hidden temporary name, closed, then renamed in
        hidden = target.with_name(".closed.png.tmp")
        _write(hidden, data)
        os.replace(hidden, target)
    record = daemon.wait_for(event="correction queued: corrections/Dog/closed.png")
    assert record["label"] == "Dog"
    assert _queued_sha(workspace.root, "corrections/Dog/closed.png") == (
        hashlib.sha256(data).hexdigest()
    )
    assert daemon.stop() == 0


def test_half_written_file_closed_is_not_taken(workspace, daemons) -> None:
    # A writer that closes between chunks: the first close comes with half a PNG.
    workspace.write_config(intake={"observer": "native", "stability_seconds": FOREVER})
    daemon = daemons(workspace).start()
    target = workspace.corrections / "Dog" / "chunks.png"
    data = photo_bytes("red", 4)
    half = len(data) // 2
    mark = daemon.mark()
    _write(target, data[:half])
    # The intake read the half file (it did not decode) before the rest is written.
    daemon.wait_for(since=mark, event="closed, not decodable yet")
    _write(target, data[half:], append=True)
    daemon.wait_for(since=mark, event="correction queued: corrections/Dog/chunks.png")
    assert not daemon.find(since=mark, event="not queued: corrections/Dog/chunks.png")
    assert _queued_sha(workspace.root, "corrections/Dog/chunks.png") == (
        hashlib.sha256(data).hexdigest()
    )
    assert daemon.stop() == 0
