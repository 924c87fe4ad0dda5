"""Start-up: wall time of ``mlupdated predict IMAGE`` (default model, one photo) as a
fresh process, cold (an empty cache directory: the graph is compiled) and warm (the
compiled graph comes from the cache)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Section, fmt, median, progress, ratio, write_photos

REPEATS = 5
QUICK_REPEATS = 1


def run(*, quick: bool, sources: list[np.ndarray], env: dict[str, str]) -> Section:
    """Measure and return the start-up section."""
    repeats = QUICK_REPEATS if quick else REPEATS
    section = Section(
        "Start-up (mlupdated predict, one photo, default model)",
        ("cache", "seconds (median)", "min", "max", "runs", "cold / warm"),
    )
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp_path = Path(tmp)
        photo = write_photos(tmp_path, [0], sources=sources)[0]
        warm_dir = tmp_path / "warm-cache"

        def predict(cache: Path) -> float:
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mlupdated.cli", "predict", str(photo)],
                capture_output=True,
                text=True,
                env={**env, "MLUPDATED_CACHE_DIR": str(cache)},
                check=False,
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"mlupdated predict failed: {done.stderr.strip()}")
            return elapsed

        progress("start-up: filling the warm cache")
        predict(warm_dir)
        cold: list[float] = []
        warm: list[float] = []
        for r in range(repeats):
            progress(f"start-up: repetition {r + 1}/{repeats} (cold, then warm)")
            cold.append(predict(tmp_path / f"cold-cache{r}"))
            warm.append(predict(warm_dir))
    for name, times in (("cold (empty cache)", cold), ("warm (compiled graph cached)", warm)):
        section.rows.append(
            (
                name,
                fmt(median(times), 2),
                fmt(min(times), 2),
                fmt(max(times), 2),
                str(len(times)),
                ratio(median(cold), median(warm)) if times is warm else "",
            )
        )
    section.notes.append(
        "Wall time of the whole process (interpreter start, imports, model load, graph "
        "compile or cache read, decode, forward, output), runs interleaved cold, warm, … "
        "MLUPDATED_CACHE_DIR is a new empty folder for each cold run, the same filled one "
        "for every warm run."
    )
    return section
