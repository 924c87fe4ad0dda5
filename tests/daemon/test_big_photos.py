"""A huge photo is checked at the model's scale, not decoded at full size by the daemon."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

SIDE = 10_000  # 100 megapixels: 300 MB (286 MiB) once decoded at full size in RGB
# About half of a full decode: a scaled (draft) decode for the check stays far below.
GROWTH_BOUND_MB = 150


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def _big_jpeg(path: Path) -> None:
    # Two colours so it is a real image, cheap to encode; decoding it at full size
    # still costs the whole RGB buffer.
    image = Image.new("RGB", (SIDE, SIDE), (200, 40, 40))
    image.paste((40, 40, 200), (0, 0, SIDE // 2, SIDE))
    image.save(path, format="JPEG", quality=80)
    image.close()


def test_a_hundred_megapixel_jpeg_is_checked_without_a_full_decode(
    workspace, daemons, tmp_path
) -> None:
    big = tmp_path / "big.jpg"
    _big_jpeg(big)
    workspace.write_config(update={"min_batch": 1000})
    daemon = daemons(workspace).start()
    before = _peak_rss_mb(daemon.pid)
    target = workspace.corrections / "Cat" / "big.jpg"
    target.write_bytes(big.read_bytes())
    daemon.wait_for(event="correction queued", path="corrections/Cat/big.jpg", timeout=120)
    after = _peak_rss_mb(daemon.pid)
    assert daemon.stop() == 0
    print(f"daemon peak RSS {before:.0f} MiB -> {after:.0f} MiB")
    assert after - before < GROWTH_BOUND_MB, (before, after)
