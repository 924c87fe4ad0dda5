"""Forward: our engine against onnxruntime on a ``torch.onnx.export`` of the same
network, side by side in one run, at batch 1 and 16, on the default model
(EfficientNet-Lite0) and on a full-size ResNet-18; PyTorch eager beside them on the
default model; images per second.

Each network's runs are interleaved (engine, export, engine, export, ...); a ratio is
the median over the repetitions of that repetition's two times, and its spread the
lowest and highest of them. A row "from JPEG files" times decoding and resizing too:
the engine's ``predict_paths`` against Pillow's open, convert and resize feeding the
export.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .common import Section, Target, fmt, interleaved, median, progress, ratio, write_photos

BATCHES = (1, 16)
QUICK_BATCHES = (1, 2)
# A batch-1 sample times this many calls, so that it is not lost in timer noise.
IMAGES_PER_SAMPLE = 4
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


def _compare(
    section: Section,
    *,
    predictor: object,
    session: object,
    images: np.ndarray,
    paths: list[Path],
    batches: Sequence[int],
    repeats: int,
    quick: bool,
    name: str,
    extra: dict[str, Callable[[np.ndarray], object]] | None = None,
) -> tuple[float, dict[int, dict[str, float]]]:
    """Rows of engine vs export (and ``extra`` runs) per batch, then one row from JPEG
    files at the largest batch; returns the worst median ratio and the rates."""
    worst = float("inf")
    rates: dict[int, dict[str, float]] = {}
    for batch in batches:
        x = images[:batch]

        def engine(x: np.ndarray = x) -> object:
            return predictor.predict_tensors({"image": x})  # type: ignore[attr-defined]

        def export(x: np.ndarray = x) -> object:
            return session.run(None, {"image": x})  # type: ignore[attr-defined]

        runs: dict[str, Callable[[], object]] = {"engine": engine, "ort": export}
        for key, fn in (extra or {}).items():
            runs[key] = lambda fn=fn, x=x: fn(x)
        progress(f"forward ({name}): batch {batch}, {repeats} interleaved repetitions")
        times = interleaved(
            runs, repeats=repeats, inner=max(1, IMAGES_PER_SAMPLE // batch) if not quick else 1
        )
        rates[batch] = {key: batch / median(t) for key, t in times.items()}
        mid, spread, value = _ratio_cells(times["ort"], times["engine"])
        worst = min(worst, value)
        section.rows.append(
            (
                str(batch),
                f"{fmt(rates[batch]['engine'])} img/s",
                f"{fmt(rates[batch]['ort'])} img/s",
                mid,
                spread,
            )
        )
    batch = max(batches)
    files = [str(p) for p in paths[:batch]]
    size = images.shape[-1]

    def engine_files() -> object:
        return predictor.predict_paths(files, batch_size=batch)  # type: ignore[attr-defined]

    def export_files() -> object:
        x = np.stack([_pillow_tensor(Path(p), size) for p in files])
        return session.run(None, {"image": x})  # type: ignore[attr-defined]

    progress(f"forward ({name}): batch {batch} from JPEG files, {repeats} repetitions")
    times = interleaved({"engine": engine_files, "ort": export_files}, repeats=repeats)
    mid, spread, value = _ratio_cells(times["ort"], times["engine"])
    worst = min(worst, value)
    section.rows.append(
        (
            f"{batch}, from JPEG files",
            f"{fmt(batch / median(times['engine']))} img/s",
            f"{fmt(batch / median(times['ort']))} img/s",
            mid,
            spread,
        )
    )
    return worst, rates


def _engine(factory: Callable[..., object], *args: object, **kwargs: object) -> tuple:
    """The engine's predictor built as ``mlupdated predict`` builds it, and whether its
    idle threads spin (an engine from before that choice, under ``--at-commit``: never)."""
    try:
        from mlupdated.engine.runtime import spinning_pays
    except ImportError:
        return factory(*args, **kwargs), False
    spinning = spinning_pays()
    return factory(*args, spinning=spinning, **kwargs), spinning


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
        predictor, spinning = _engine(Predictor, spec, path=model_path, cache=False)
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

        worst, rates = _compare(
            section,
            predictor=predictor,
            session=session,
            images=images,
            paths=paths,
            batches=batches,
            repeats=repeats,
            quick=quick,
            name="default model",
            extra={"eager": eager, "eager_1": eager_1},
        )
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
        "onnxruntime's default options (idle threads spin); the engine's is built as "
        "`mlupdated predict` builds it: idle threads spin only when the load average is "
        f"below half the CPUs ({'they spin' if spinning else 'they do not'} in this run). "
        "Inputs are the same decoded 0..255 tensors for all (decoding is not timed except "
        "in the row from JPEG files); the PyTorch module "
        "and the export include the scaler, the softmax and the familiarity branch, as the "
        "engine does."
    )
    section.targets.append(_target("default model", worst))
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
        predictor, spinning = _engine(Predictor.from_path, model_path, cache=False)
        image_type = predictor.image_feature.type.imageType
        paths = write_photos(tmp_path / "photos", range(max(batches)), sources=sources)
        images = np.stack([load_tensor(p, image_type) for p in paths]).astype(np.float32)
        worst, _ = _compare(
            section,
            predictor=predictor,
            session=session,
            images=images,
            paths=paths,
            batches=batches,
            repeats=repeats,
            quick=quick,
            name="ResNet-18",
        )
        labels = [f"class{i}" for i in range(1000)]
        found = predictor.predict_tensors({"image": images})
        got = np.array([[p.probabilities[k] for k in labels] for p in found])
        theirs = session.run(None, {"image": images})[0]
    section.notes.append(
        f"Largest probability difference on the {len(images)} photos, engine vs export: "
        f"{np.max(np.abs(got - theirs)):.1e}. The network is converted by coremltools "
        "(neural network, image input with scale and bias, classifier); the export is the "
        "same PyTorch module with that scale and bias in front. The engine's idle threads "
        f"{'spin' if spinning else 'do not spin'} in this run (see the section above)."
    )
    section.targets.append(_target("ResNet-18", worst))
    return section


def _short(got: float, goal: float) -> str:
    return "" if got >= goal else f"{(1 - got / goal) * 100:.0f}% below the goal"
