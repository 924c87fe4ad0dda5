"""Memory under huge images: a 100-megapixel photo is taken within a bound, a
decompression bomb is refused before it inflates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from tests.reliability.badinput import png_bomb
from tests.reliability.harness import make_workspace, read_db, rss_mb, write_figures

pytestmark = pytest.mark.slow

SIDE = 10_000  # 100 megapixels
# A full decode of 100 megapixels in RGB is 300 MB. ``predict`` must stay well under it
# (JPEG decoders can scale down while decoding; the model wants 16 px).
FULL_DECODE_MB = SIDE * SIDE * 3 / 2**20
BOMB_BOUND_MB = 64


def _photo(path) -> None:
    gradient = Image.linear_gradient("L").resize((SIDE, SIDE))
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient)).save(
        path, format="JPEG", quality=85
    )


def _peak_rss_of(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command`` in a fresh interpreter that reports its child's peak RSS (MiB)."""
    probe = (
        "import json, resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024; "
        "print(json.dumps({'peak': peak, 'code': done.returncode, 'out': done.stdout, "
        "'err': done.stderr}))"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    data = json.loads(done.stdout)
    result = subprocess.CompletedProcess(command, data["code"], data["out"], data["err"])
    return data["peak"], result


def test_hundred_megapixel_photo_and_bomb(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, update={"min_batch": 1000})
    big = tmp_path / "big.jpg"
    _photo(big)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())

    daemon = daemons(ws).start()
    before = rss_mb(daemon.pid, "VmHWM")
    (ws.corrections / "Cat" / "big.jpg").write_bytes(big.read_bytes())
    daemon.wait_for(event="correction queued", path="corrections/Cat/big.jpg", timeout=120)
    after_photo = rss_mb(daemon.pid, "VmHWM")
    (ws.corrections / "Cat" / "bomb.png").write_bytes(bomb.read_bytes())
    refused = daemon.wait_for(event="not queued", path="corrections/Cat/bomb.png", timeout=60)
    after_bomb = rss_mb(daemon.pid, "VmHWM")
    assert daemon.stop() == 0
    assert "pixels" in refused["reason"]
    assert read_db(ws.root, "SELECT count(*) FROM corrections") == [(1,)]
    # The daemon's decodability check decodes at a reduced scale, as predict does.
    assert after_photo - before < FULL_DECODE_MB / 2, (before, after_photo)
    assert after_bomb - after_photo < BOMB_BOUND_MB, (after_photo, after_bomb)

    predict = [sys.executable, "-m", "mlupdated.cli", "predict", "--model", str(small_model)]
    peak_photo, done = _peak_rss_of([*predict, "--json", str(big)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in {"Cat", "Dog"}
    peak_bomb, done = _peak_rss_of([*predict, "--json", str(bomb)])
    assert done.returncode == 1 and "pixels" in json.loads(done.stdout)["error"]
    peak_plain, _ = _peak_rss_of([*predict, "--json", str(small_model)])
    assert peak_photo - peak_plain < FULL_DECODE_MB / 2, (peak_plain, peak_photo)
    assert peak_bomb - peak_plain < BOMB_BOUND_MB, (peak_plain, peak_bomb)
    write_figures(
        "memory",
        {
            "photo_megapixels": SIDE * SIDE / 1e6,
            "daemon_peak_rss_mb_before": round(before, 1),
            "daemon_peak_rss_mb_after_photo": round(after_photo, 1),
            "daemon_peak_rss_mb_after_bomb": round(after_bomb, 1),
            "predict_peak_rss_mb_photo": round(peak_photo, 1),
            "predict_peak_rss_mb_bomb": round(peak_bomb, 1),
            "predict_peak_rss_mb_baseline": round(peak_plain, 1),
        },
    )
