"""What the daemon leaves on disk: nothing world-writable, nothing outside the workspace
and the cache, no image bytes and no outside paths in the database and the logs."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.daemon.conftest import make_photo
from tests.reliability.harness import make_workspace, world_writable, write_figures

pytestmark = pytest.mark.slow

HOME_VARS = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)*[\w.@+-]+")


def _everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _db_values(db: Path) -> list[object]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        values: list[object] = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                values.extend(row)
        return values
    finally:
        conn.close()


def test_daemon_writes_only_its_workspace_and_cache(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(
        tmp_path / "ws",
        small_model,
        update={"min_batch": 3, "quiet_seconds": 0.5, "epochs": 3},
        gate={"enabled": False},
    )
    homes = {var: tmp_path / "home" / var.lower() for var in HOME_VARS}
    for path in homes.values():
        path.mkdir(parents=True)
    cache = tmp_path / "cache"
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {var: str(path) for var, path in homes.items()}
    env |= {"MLUPDATED_CACHE_DIR": str(cache), "TMPDIR": str(scratch)}
    # Started under umask 000: the daemon's own modes must keep anything from coming
    # out world-writable, whatever the environment.
    umask = os.umask(0)
    try:
        daemon = daemons(ws, env).start()
    finally:
        os.umask(umask)
    photos = [make_photo(ws.corrections / "Dog" / f"p{i}.png", "blue", i) for i in range(3)]
    finished = daemon.wait_for(event="update finished", timeout=90)
    assert finished["outcome"] == "promoted", finished
    make_photo(ws.root / "inbox" / "new.png", "blue", 50)
    daemon.wait_for(event="inbox: classified", timeout=60)
    assert daemon.stop() == 0

    # Nothing in the home and XDG folders, nothing left in TMPDIR (onnxruntime's
    # telemetry client, which would write a device id there, is turned off).
    found = {var: _everything(path) for var, path in homes.items()}
    assert found == {var: set() for var in homes}
    assert _everything(scratch) == set()
    # Nothing anyone may write, in the workspace or the cache.
    assert world_writable(ws.root) == []
    assert not cache.exists() or world_writable(cache) == []

    # The database: no image bytes (no blobs at all), no path outside the workspace.
    values = _db_values(ws.root / "state" / "mlupdated.db")
    assert not [v for v in values if isinstance(v, bytes)]
    image_bytes = [p.read_bytes()[8:40] for p in photos]
    texts = [v for v in values if isinstance(v, str)]
    assert not [t for t in texts for chunk in image_bytes if chunk.hex() in t]
    outside = _outside_paths(texts, ws.root)
    assert outside == [], outside

    # The log and the predictions file: paths are the workspace's own.
    log_text = "\n".join(daemon.raw)
    predictions = (ws.root / "predictions.jsonl").read_text()
    outside_log = _outside_paths([log_text, predictions], ws.root, allowed=(cache,))
    assert outside_log == [], outside_log
    for line in predictions.splitlines():
        assert not Path(json.loads(line)["path"]).is_absolute()
    write_figures(
        "permissions",
        {
            "workspace_files_checked": len(_everything(ws.root)),
            "world_writable": 0,
            "files_outside_workspace_and_cache": 0,
            "db_blobs": 0,
        },
    )


def _outside_paths(texts: list[str], root: Path, *, allowed: tuple[Path, ...] = ()) -> list[str]:
    """Absolute paths in ``texts`` that are neither in ``root`` nor in ``allowed``."""
    roots = [str(root), *map(str, allowed)]
    found = []
    for text in texts:
        for match in _ABS_PATH.findall(text):
            if not any(match == r or match.startswith(r + os.sep) for r in roots):
                found.append(match)
    return sorted(set(found))
