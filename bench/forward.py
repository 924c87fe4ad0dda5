"""Forward: our engine against onnxruntime on a ``torch.onnx.export`` of the same
network, side by side in one run, at batch 1 and 16, on the default model
(EfficientNet-Lite0) and on a full-size ResNet-18; PyTorch eager beside them on the
default model; images per second.

Each network's runs are interleaved (engine, export, engine, export, ...); a ratio is
the median over the repetitions of that repetition's two times, and its spread the
lowest and highest of them; each sample starts after a short untimed pause. A row
"from JPEG files" times decoding and resizing too: the engine's ``predict_paths``
against Pillow's open, convert and resize feeding the export, on small photos and on
phone-size ones. The rows "one CPU busy elsewhere" run while another program keeps a
CPU busy, with the engine built as ``predict`` would build it then.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import Section, Target, fmt, interleaved, median, progress, ratio, write_photos

BATCHES = (1, 16)
QUICK_BATCHES = (1, 2)
# A batch-1 sample times this many calls, so that it is not lost in timer noise.
IMAGES_PER_SAMPLE = 16
# Untimed seconds before each sample. By default onnxruntime's threads spin on after a
# run (the export's session); a side timed while the other side's threads still spin
# loses a core that a real user of either side has to themselves.
COOL_DOWN_S = 0.1
# Seconds for the busy program to start before the engine looks at the machine.
HOG_SETTLE_S = 0.5
# The long side of the "phone-size" photos (a 12-megapixel phone camera's is 4032).
PHONE_SIDE = 4032
ENGINE_VS_ORT_GOAL = 1.0
ENGINE_VS_EAGER_GOAL = 2.0
HEADER = (
    "batch",
    "mlupdated engine",
    "onnxruntime on export",
    "engine / onnxruntime (median)",
    "spread (min–max)",
)


def run(*, quick: bool, repeats: int, sources: list[np.ndarray]) -> list[Section]:
    """Measure and return the forward sections (default model, ResNet-18)."""
    return [
        _default_model(quick=quick, repeats=repeats, sources=sources),
        _resnet18(quick=quick, repeats=repeats, sources=sources),
    ]


def paired_ratios(slow: Sequence[float], fast: Sequence[float]) -> list[float]:
    """``slow[i] / fast[i]`` for each repetition: how many times faster ``fast`` was."""
    return [s / f for s, f in zip(slow, fast, strict=True) if f > 0]


def _ratio_cells(theirs: Sequence[float], ours: Sequence[float]) -> tuple[str, str, float]:
    ratios = paired_ratios(theirs, ours)
    mid = median(ratios)
    return f"{mid:.2f}×", f"{min(ratios):.2f}–{max(ratios):.2f}×", mid


def _pillow_tensor(path: Path, size: int) -> np.ndarray:
    """What a user of the export would write: open, RGB, resize, CHW float32."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1)


@dataclass
class _Rows:
    """What every row of one network's section shares: the section the rows go to, the
    export's session, the decoded photos, how to time, and the worst median ratio of
    engine / export so far."""

    section: Section
    session: object
    images: np.ndarray
    batches: Sequence[int]
    repeats: int
    quick: bool
    name: str
    worst: float = float("inf")

    def add(self, label: str, times: dict[str, list[float]], batch: int) -> None:
        """One row: images/s of both sides, the median ratio and its spread."""
        mid, spread, value = _ratio_cells(times["ort"], times["engine"])
        self.worst = min(self.worst, value)
        self.section.rows.append(
            (
                label,
                f"{fmt(batch / median(times['engine']))} img/s",
                f"{fmt(batch / median(times['ort']))} img/s",
                mid,
                spread,
            )
        )


def _compare(
    rows: _Rows,
    predictor: object,
    paths: list[Path],
    extra: dict[str, Callable[[np.ndarray], object]] | None = None,
) -> dict[int, dict[str, float]]:
    """Rows of engine vs export (and ``extra`` runs) per batch, then one row from JPEG
    files at the largest batch; returns the rates."""
    rates = _tensor_rows(rows, predictor, extra=extra)
    _files_row(rows, predictor, paths[: max(rows.batches)], "from JPEG files")
    return rates


def _tensor_rows(
    rows: _Rows,
    predictor: object,
    *,
    label: str = "",
    extra: dict[str, Callable[[np.ndarray], object]] | None = None,
) -> dict[int, dict[str, float]]:
    """One row of engine vs export (and ``extra`` runs) per batch, on decoded tensors;
    returns images/s of each run per batch."""
    rates: dict[int, dict[str, float]] = {}
    for batch in rows.batches:
        x = rows.images[:batch]

        def engine(x: np.ndarray = x) -> object:
            return predictor.predict_tensors({"image": x})  # type: ignore[attr-defined]

        def export(x: np.ndarray = x) -> object:
            return rows.session.run(None, {"image": x})  # type: ignore[attr-defined]

        runs: dict[str, Callable[[], object]] = {"engine": engine, "ort": export}
        for key, fn in (extra or {}).items():
            runs[key] = lambda fn=fn, x=x: fn(x)
        progress(
            f"forward ({rows.name}{label}): batch {batch}, {rows.repeats} interleaved repetitions"
        )
        times = interleaved(
            runs,
            repeats=rows.repeats,
            inner=max(1, IMAGES_PER_SAMPLE // batch) if not rows.quick else 1,
            pause=COOL_DOWN_S,
        )
        rates[batch] = {key: batch / median(t) for key, t in times.items()}
        rows.add(f"{batch}{label}", times, batch)
    return rates


@contextmanager
def _one_cpu_busy() -> Iterator[None]:
    """Another program keeps one CPU busy (a Python busy loop) for the duration."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(HOG_SETTLE_S)
        yield
    finally:
        hog.kill()
        hog.wait()


def _under_load(rows: _Rows, build: Callable[[], tuple]) -> str:
    """Rows with another program busy on one CPU: the engine built as ``predict`` builds
    it while that program runs (it sees the busy CPU), the export's session as it was.
    Returns how the engine chose its threads ("": no rows, this machine has one CPU)."""
    if (os.cpu_count() or 1) < 2:
        return ""
    with _one_cpu_busy():
        predictor, how = build()
        _tensor_rows(rows, predictor, label=", one CPU busy elsewhere")
    return how


def _files_row(rows: _Rows, predictor: object, paths: Sequence[Path], label: str) -> None:
    """One row that times decoding and resizing too: the engine's ``predict_paths``
    against Pillow's open, convert and resize feeding the export."""
    files = [str(p) for p in paths]
    batch = len(files)
    size = rows.images.shape[-1]

    def engine_files() -> object:
        return predictor.predict_paths(files, batch_size=batch)  # type: ignore[attr-defined]

    def export_files() -> object:
        x = np.stack([_pillow_tensor(Path(p), size) for p in files])
        return rows.session.run(None, {"image": x})  # type: ignore[attr-defined]

    progress(f"forward ({rows.name}): batch {batch} {label}, {rows.repeats} repetitions")
    times = interleaved(
        {"engine": engine_files, "ort": export_files}, repeats=rows.repeats, pause=COOL_DOWN_S
    )
    rows.add(f"{batch}, {label}", times, batch)


def _engine(factory: Callable[..., object], *args: object, **kwargs: object) -> tuple:
    """The engine's predictor built as ``mlupdated predict`` builds it, and a few words
    on how its threads were chosen (an engine from before that choice, under
    ``--at-commit``, builds it as it did then)."""
    one_shot_threads = _found("mlupdated.engine.threads", "mlupdated.engine.runtime")
    if one_shot_threads is None:
        return _older_engine(factory, *args, **kwargs)
    threads = one_shot_threads()
    how = (
        "onnxruntime's thread count, spinning during runs"
        if threads.spinning
        else f"{threads.count} thread(s), not spinning"
    )
    return factory(*args, threads=threads, **kwargs), how


def _found(*modules: str) -> Callable[[], Any] | None:
    """``one_shot_threads`` from the first of ``modules`` that has it (it moved between
    commits that ``--at-commit`` may measure)."""
    for name in modules:
        try:
            return importlib.import_module(name).one_shot_threads
        except (ImportError, AttributeError):
            continue
    return None


def _older_engine(factory: Callable[..., object], *args: object, **kwargs: object) -> tuple:
    try:
        from mlupdated.engine.runtime import spinning_pays
    except ImportError:
        return factory(*args, **kwargs), "not spinning"
    spinning = spinning_pays()
    how = "spinning" if spinning else "not spinning"
    return factory(*args, spinning=spinning, **kwargs), how


def _load_note(how: str) -> str:
    if not how:
        return "No rows with a busy CPU: this machine has one CPU."
    return (
        "In the rows with one CPU busy elsewhere, another program (a Python busy loop) "
        "runs throughout; the engine's predictor is built while it runs, as `predict` "
        f"would be (its threads: {how}), and the export's session is the same as above "
        "(onnxruntime's defaults: a thread per core, spinning)."
    )


def _target(name: str, worst: float) -> Target:
    return Target(
        f"forward vs onnxruntime on export ({name})",
        f"≥ {ENGINE_VS_ORT_GOAL}× at every batch size",
        f"{worst:.2f}× (worst median)",
        worst >= ENGINE_VS_ORT_GOAL,
        _short(worst, ENGINE_VS_ORT_GOAL),
    )


def _default_model(*, quick: bool, repeats: int, sources: list[np.ndarray]) -> Section:
    import torch
    from mlupdated.coreml.images import load_tensor
    from mlupdated.coreml.spec import load_spec
    from mlupdated.engine.predictor import Predictor

    from .reference import build_torch_model, default_model_path, export_onnx, ort_session

    batches = QUICK_BATCHES if quick else BATCHES
    model_path = default_model_path()
    spec = load_spec(model_path)
    section = Section(
        "Forward (default model, 224×224)",
        (*HEADER, "PyTorch eager (best of default and 1 thread)", "engine / eager"),
    )
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as tmp:
        tmp_path = Path(tmp)
        progress("forward: building the PyTorch model and its ONNX export")
        model = build_torch_model(spec)
        default_threads = torch.get_num_threads()
        session = ort_session(
            export_onnx(model, tmp_path / "catdog.onnx", outputs=("output", "familiarity"))
        )
        predictor, how = _engine(Predictor, spec, path=model_path, cache=False)
        image_type = predictor.image_feature.type.imageType
        paths = write_photos(tmp_path / "photos", range(max(batches)), sources=sources)
        images = np.stack([load_tensor(p, image_type) for p in paths]).astype(np.float32)

        def eager(x: np.ndarray) -> object:
            torch.set_num_threads(default_threads)
            with torch.no_grad():
                return model(torch.from_numpy(x))

        def eager_1(x: np.ndarray) -> object:
            torch.set_num_threads(1)
            with torch.no_grad():
                return model(torch.from_numpy(x))

        rows = _Rows(section, session, images, batches, repeats, quick, "default model")
        rates = _compare(rows, predictor, paths, extra={"eager": eager, "eager_1": eager_1})
        torch.set_num_threads(default_threads)
        worst_eager = float("inf")
        for row_index, batch in enumerate(batches):
            best = max(rates[batch]["eager"], rates[batch]["eager_1"])
            worst_eager = min(worst_eager, rates[batch]["engine"] / best)
            section.rows[row_index] += (
                f"{fmt(best)} img/s",
                ratio(rates[batch]["engine"], best),
            )
        section.rows[-1] += ("", "")

        phones = write_photos(
            tmp_path / "phone", range(max(batches)), sources=sources, size=PHONE_SIDE
        )
        _files_row(rows, predictor, phones, "from phone-size JPEG files")
        section.rows[-1] += ("", "")
        quiet_rows = len(section.rows)
        loaded_how = _under_load(
            rows, lambda: _engine(Predictor, spec, path=model_path, cache=False)
        )
        for index in range(quiet_rows, len(section.rows)):
            section.rows[index] += ("", "")

        found = predictor.predict_tensors({"image": images})
        got = np.array([[p.probabilities[k] for k in ("Cat", "Dog")] for p in found])
        got_familiar = np.array([np.ravel(p.outputs["familiarity"])[0] for p in found])
        with torch.no_grad():
            want, want_familiar = (t.numpy() for t in model(torch.from_numpy(images)))
        theirs = session.run(None, {"image": images})[0]
    section.notes.append(
        f"Largest difference on the {len(images)} photos: probabilities, engine vs PyTorch "
        f"{np.max(np.abs(got - want)):.1e} and export vs PyTorch "
        f"{np.max(np.abs(theirs - want)):.1e}; familiarity, engine vs PyTorch "
        f"{np.max(np.abs(got_familiar - want_familiar.ravel())):.1e}."
    )
    section.notes.append(
        f"PyTorch eager runs twice: with torch's default {default_threads} threads and with "
        "1 thread; the faster of the two is shown. The export's onnxruntime session has "
        "onnxruntime's default options (idle threads spin, and go on spinning for a while "
        "after each run); the engine's is built as `mlupdated predict` builds it: idle "
        "threads spin during a run only, and only when fewer than half the CPUs are busy "
        f"with other work as it starts, and otherwise as many threads as CPUs are idle (in "
        f"this run: {how}). Each sample starts {COOL_DOWN_S:g} s after the previous one ended, so "
        "that neither side is timed while the other's threads still spin. "
        "Inputs are the same decoded 0..255 tensors for all (decoding is not timed except "
        "in the row from JPEG files); the PyTorch module "
        "and the export include the scaler, the softmax and the familiarity branch, as the "
        "engine does."
    )
    section.notes.append(
        f"The rows from JPEG files time decoding and resizing too: {max(batches)} photos of "
        f"320 pixels on the long side, and the same number of phone-size ones ({PHONE_SIDE} "
        "pixels on the long side, about 12 megapixels at 4:3). The export's side opens, "
        "converts and resizes each with Pillow, one after another, as its user would; the "
        "engine's `predict_paths` decodes a batch's files on as many threads as it may use, "
        "and a JPEG of 4 megapixels or more at a reduced scale (DCT scaling, never below "
        "twice the model's input), which leaves its pixels within a few levels of a full "
        "decode's after the resize."
    )
    section.notes.append(_load_note(loaded_how))
    section.targets.append(_target("default model", rows.worst))
    section.targets.append(
        Target(
            "forward vs PyTorch eager",
            f"≥ {ENGINE_VS_EAGER_GOAL}× at every batch size",
            f"{worst_eager:.2f}× (worst batch)",
            worst_eager >= ENGINE_VS_EAGER_GOAL,
            _short(worst_eager, ENGINE_VS_EAGER_GOAL),
        )
    )
    return section


def _resnet18(*, quick: bool, repeats: int, sources: list[np.ndarray]) -> Section:
    import torch
    from mlupdated.coreml.images import load_tensor
    from mlupdated.engine.predictor import Predictor

    from .forward_resnet18 import BIAS, SCALE, convert, resnet18
    from .reference import export_onnx, ort_session

    batches = QUICK_BATCHES if quick else BATCHES
    section = Section("Forward (ResNet-18, 224×224, 1000 classes, random weights)", HEADER)
    torch.manual_seed(0)
    network = resnet18().eval()

    class Exported(torch.nn.Module):
        """What the Core ML model computes: the scaler, then the network."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.register_buffer("bias", torch.tensor(BIAS).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.network(x * SCALE + self.bias)

    with tempfile.TemporaryDirectory(prefix="bench-forward-") as tmp:
        tmp_path = Path(tmp)
        progress("forward (ResNet-18): converting to Core ML and exporting to ONNX")
        model_path = tmp_path / "resnet18.mlmodel"
        convert(network, model_path)
        session = ort_session(export_onnx(Exported().eval(), tmp_path / "resnet18.onnx"))
        predictor, how = _engine(Predictor.from_path, model_path, cache=False)
        image_type = predictor.image_feature.type.imageType
        paths = write_photos(tmp_path / "photos", range(max(batches)), sources=sources)
        images = np.stack([load_tensor(p, image_type) for p in paths]).astype(np.float32)
        rows = _Rows(section, session, images, batches, repeats, quick, "ResNet-18")
        _compare(rows, predictor, paths)
        loaded_how = _under_load(
            rows, lambda: _engine(Predictor.from_path, model_path, cache=False)
        )
        labels = [f"class{i}" for i in range(1000)]
        found = predictor.predict_tensors({"image": images})
        got = np.array([[p.probabilities[k] for k in labels] for p in found])
        theirs = session.run(None, {"image": images})[0]
    section.notes.append(
        f"Largest probability difference on the {len(images)} photos, engine vs export: "
        f"{np.max(np.abs(got - theirs)):.1e}. The network is converted by coremltools "
        "(neural network, image input with scale and bias, classifier); the export is the "
        "same PyTorch module with that scale and bias in front. The engine's threads in "
        f"this run: {how} (see the section above)."
    )
    section.notes.append(_load_note(loaded_how))
    section.targets.append(_target("ResNet-18", rows.worst))
    return section


def _short(got: float, goal: float) -> str:
    return "" if got >= goal else f"{(1 - got / goal) * 100:.0f}% below the goal"
