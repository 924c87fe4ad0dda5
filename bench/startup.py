"""Start-up: wall time of ``mlupdated predict IMAGE`` (default model, one photo) as a
fresh process, cold (an empty cache directory: the graph is compiled) and warm (the
compiled graph comes from the cache), beside the shortest script a user of onnxruntime
would write for the same job on a ``torch.onnx.export`` of the same network."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Section, fmt, median, progress, write_photos

REPEATS = 5
QUICK_REPEATS = 1

# Open the export, decode and resize the photo with Pillow, run, print the top label.
PEER_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
with Image.open(sys.argv[2]) as image:
    pixels = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
x = np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1)[None]
probabilities = session.run(None, {"image": x})[0][0]
print(["Cat", "Dog"][int(probabilities.argmax())], float(probabilities.max()))
"""


def run(*, quick: bool, sources: list[np.ndarray], env: dict[str, str]) -> Section:
    """Measure and return the start-up section."""
    repeats = QUICK_REPEATS if quick else REPEATS
    section = Section(
        "Start-up (mlupdated predict, one photo, default model)",
        ("run", "seconds (median)", "min", "max", "runs", "this / warm (median of pairs)"),
    )
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        tmp_path = Path(tmp)
        photo = write_photos(tmp_path, [0], sources=sources)[0]
        warm_dir = tmp_path / "warm-cache"
        export = _export(tmp_path)

        def timed(command: list[str], cache: Path) -> float:
            start = time.perf_counter()
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**env, "MLUPDATED_CACHE_DIR": str(cache)},
                check=False,
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{command[1]} failed: {done.stderr.strip()}")
            return elapsed

        predict = [sys.executable, "-m", "mlupdated.cli", "predict", str(photo)]
        script = [sys.executable, "-c", PEER_SCRIPT, str(export), str(photo)]
        progress("start-up: filling the warm cache")
        timed(predict, warm_dir)
        times: dict[str, list[float]] = {"cold": [], "warm": [], "script": []}
        for r in range(repeats):
            progress(f"start-up: repetition {r + 1}/{repeats} (cold, warm, the script)")
            times["cold"].append(timed(predict, tmp_path / f"cold-cache{r}"))
            times["warm"].append(timed(predict, warm_dir))
            if export is not None:
                times["script"].append(timed(script, warm_dir))
    names = {
        "cold": "mlupdated predict, cold (empty cache)",
        "warm": "mlupdated predict, warm (compiled graph cached)",
        "script": "onnxruntime script on the export",
    }
    for key, name in names.items():
        if not times[key]:
            continue
        pairs = [a / b for a, b in zip(times[key], times["warm"], strict=True)]
        section.rows.append(
            (
                name,
                fmt(median(times[key]), 2),
                fmt(min(times[key]), 2),
                fmt(max(times[key]), 2),
                str(len(times[key])),
                "" if key == "warm" else f"{median(pairs):.2f}×",
            )
        )
    section.notes.append(
        "Wall time of the whole process (interpreter start, imports, model load, graph "
        "compile or cache read, decode, forward, output), runs interleaved cold, warm, "
        "script, … MLUPDATED_CACHE_DIR is a new empty folder for each cold run, the same "
        "filled one for every warm run. The script is the shortest a user of onnxruntime "
        "would write: open the exported ONNX file (exported once before the runs), decode "
        "and resize the photo with Pillow, run, print the top label. `predict` does more "
        "for the same answer: it checks the file (regular file, format, size limit, EXIF "
        "orientation), finds the workspace and its current model, and prints the "
        "familiarity."
    )
    return section


def _export(directory: Path) -> Path | None:
    """The default model's network (scaler, softmax and familiarity branch included) as
    ``torch.onnx.export`` writes it; ``None`` without the build extra (PyTorch and the
    backbone's package), which rebuilding the network needs."""
    from mlupdated.coreml.spec import load_spec

    from .reference import build_torch_model, default_model_path, export_onnx

    progress("start-up: exporting the default model's network to ONNX for the script")
    try:
        model = build_torch_model(load_spec(default_model_path()))
    except ImportError:
        return None
    return export_onnx(model, directory / "default.onnx", outputs=("output", "familiarity"))
