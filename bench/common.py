"""What every benchmark section shares: progress lines, interleaved timing, machine
facts, the photos they all use, and the shape of a section's result."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# Colour photographs bundled with scikit-image (no download needed).
PHOTO_NAMES = (
    "chelsea",
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
)
JPEG_QUALITY = 90

_START = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, with the time since the run started."""
    elapsed = time.monotonic() - _START
    print(f"[bench {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def interleaved(
    runs: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    inner: int = 1,
    pause: float = 0.0,
) -> dict[str, list[float]]:
    """Seconds per call of each run, measured A, B, C, A, B, C, ... so that load from
    elsewhere on the machine falls on all of them alike. Each sample times ``inner``
    calls (divided back to one call) so that short calls are not lost in timer noise,
    and starts ``pause`` seconds after the previous one ended (untimed), so that work a
    run leaves behind (threads still spinning) does not land on the next one."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            for _ in range(inner):
                run()
            times[name].append((time.perf_counter() - start) / inner)
    return times


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def machine_facts() -> dict[str, str]:
    """CPU count, Python, library versions and the date of the run."""
    facts = {
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPUs": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }
    for module in ("numpy", "onnxruntime", "torch"):
        try:
            facts[module] = __import__(module).__version__
        except ImportError:
            facts[module] = "not installed"
    load = _load_average()
    if load:
        facts["load average at start"] = load
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return ""


def source_photos() -> list[np.ndarray]:
    """The bundled colour photos as ``(H, W, 3)`` uint8 arrays."""
    import warnings

    from skimage import data

    photos = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PHOTO_NAMES:
            photos.append(np.ascontiguousarray(getattr(data, name)()[..., :3]))
    return photos


def varied_photo(sources: Sequence[np.ndarray], seed: int, *, size: int = 320) -> object:
    """A photo-like Pillow image: a random crop of one source photo, maybe flipped,
    with a colour and brightness jitter, resized so its long side is ``size``."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    source = sources[seed % len(sources)]
    h, w = source.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 0.95)), int(w * rng.uniform(0.5, 0.95))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image = Image.fromarray(source[top : top + ch, left : left + cw])
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def write_photos(
    directory: Path,
    seeds: Sequence[int],
    *,
    sources: Sequence[np.ndarray],
    prefix: str = "photo",
    size: int = 320,
) -> list[Path]:
    """Save :func:`varied_photo` of each seed (long side ``size``) as a JPEG in
    ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = directory / f"{prefix}{seed:05d}.jpg"
        varied_photo(sources, seed, size=size).save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


@dataclass
class Target:
    """A goal from the issue and whether this run met it."""

    name: str
    goal: str
    measured: str
    met: bool
    shortfall: str = ""


@dataclass
class Section:
    """One section's result: a table (header + rows of text) and its targets."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table cell (``n/a`` for NaN)."""
    return "n/a" if value != value else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23×``."""
    if b == 0 or a != a or b != b:
        return "n/a"
    return f"{a / b:.2f}×"
