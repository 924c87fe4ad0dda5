"""Load: a burst of thousands of files dropped at once, and swaps of the live model
under readers that parse it continuously."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml.spec import load_spec_bytes
from PIL import Image

from tests.daemon.conftest import cli, make_photo
from tests.reliability.harness import (
    make_workspace,
    read_db,
    rss_mb,
    scale,
    store_problems,
    write_figures,
)

pytestmark = pytest.mark.slow

BURST = scale(10_000, 20_000)
SWAPS = scale(20, 60)
# A budget, not a measurement: the intake must not hold the burst in memory (10,000
# decoded 16 px images are under 8 MB; file lists and hashes well under that).
RSS_GROWTH_LIMIT_MB = 150


def _tiny_pngs(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 8 px PNGs (the index is in the pixels)."""
    folder.mkdir(parents=True)
    made = []
    base = np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    for i in range(count):
        pixels = base.copy()
        pixels[0, 0] = (i & 0xFF, (i >> 8) & 0xFF, (i >> 16) & 0xFF)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        path = folder / f"b{i:05d}.png"
        path.write_bytes(out.getvalue())
        made.append(path)
    return made


def test_burst_of_files_dropped_at_once(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, update={"min_batch": 1_000_000})
    staged = _tiny_pngs(tmp_path / "staging", BURST)
    daemon = daemons(ws).start()
    baseline = rss_mb(daemon.pid)
    samples = [baseline]
    started = time.monotonic()
    for i, path in enumerate(staged):  # same file system: each arrives whole, at once
        os.rename(path, ws.corrections / ("Cat" if i % 2 else "Dog") / path.name)
    dropped = time.monotonic() - started
    deadline = started + 600
    while time.monotonic() < deadline:
        samples.append(rss_mb(daemon.pid))
        (count,) = read_db(ws.root, "SELECT count(*) FROM corrections")[0]
        if count >= BURST:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - started
    time.sleep(2)  # anything queued twice would show now
    samples.append(rss_mb(daemon.pid))

    rows = read_db(ws.root, "SELECT state, count(*) FROM corrections GROUP BY state")
    known = {Path(p).name for (p,) in read_db(ws.root, "SELECT path FROM correction_paths")}
    missing = sorted({p.name for p in staged} - known)
    about = [r for r in daemon.records if any(m in json.dumps(r) for m in missing[:5])]
    assert missing == [], (len(missing), missing[:10], about[:10], round(seconds, 1))
    paths = read_db(ws.root, "SELECT count(*) FROM correction_paths")[0][0]
    queued_lines = len(daemon.find(event="correction queued"))
    assert dict(rows) == {"pending": BURST}
    assert paths == BURST
    assert queued_lines == BURST  # each file queued once, never twice
    growth = max(samples) - baseline
    assert growth < RSS_GROWTH_LIMIT_MB, samples
    assert daemon.stop() == 0
    write_figures(
        "burst",
        {
            "files": BURST,
            "queued_once": queued_lines,
            "seconds_to_drop": round(dropped, 1),
            "seconds_until_all_queued": round(seconds, 1),
            "rss_mb_at_ready": round(baseline, 1),
            "rss_mb_peak_during_burst": round(max(samples), 1),
            "rss_mb_after": round(samples[-1], 1),
        },
    )


class _Reader(threading.Thread):
    """Reads and parses ``current.mlmodel`` in a loop; counts reads and failures."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.partial: list[str] = []
        self.digests: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            data = self.path.read_bytes()
            try:
                load_spec_bytes(data, path=self.path)
            except Exception as exc:  # a partial or mixed file is what this looks for
                self.partial.append(f"{len(data)} bytes: {exc}")
            self.reads += 1
            self.digests.add(hash(data))


def test_swaps_under_a_reader_loop(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(
        tmp_path / "ws",
        small_model,
        update={"min_batch": 3, "quiet_seconds": 0.5, "epochs": 3},
        gate={"enabled": False},
    )
    held = open(ws.current_model, "rb")  # a program holding the old model open
    reader = _Reader(ws.current_model)
    reader.start()
    daemon = daemons(ws).start()
    swaps = 0
    # Updates by the daemon: each one a swap.
    updates = 4
    for n in range(updates):
        since = daemon.mark()
        for i in range(3):
            make_photo(ws.corrections / "Cat" / f"u{n}-{i}.png", "red", 1000 * n + i)
        finished = daemon.wait_for(since=since, event="update finished", timeout=90)
        assert finished["outcome"] == "promoted", finished
        swaps += 1
    # Rollbacks and roll-forwards while the daemon runs: the rest of the swaps.
    versions = list(range(1, updates + 2))
    while swaps < SWAPS:
        target = versions[swaps % len(versions)]
        done = cli("rollback", "--workspace", str(ws.root), "--to", str(target))
        assert done.returncode == 0, done.stderr
        swaps += 1
    reader.stop.set()
    reader.join(30)
    old = held.read()
    held.close()
    assert daemon.stop() == 0

    assert reader.partial == []
    assert reader.reads > swaps
    assert len(reader.digests) > 1  # the reader did see the model change
    load_spec_bytes(old)  # the old handle still reads the whole old model
    assert store_problems(ws.root) == []
    write_figures(
        "swaps",
        {
            "swaps": swaps,
            "by_daemon_update": updates,
            "by_rollback": swaps - updates,
            "reads": reader.reads,
            "distinct_models_read": len(reader.digests),
            "partial_reads": len(reader.partial),
        },
    )
