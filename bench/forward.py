"""Forward: the default model through our engine, PyTorch eager, and onnxruntime on a
``torch.onnx.export`` of the same network; batch 1 and 16; images per second."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import Section, Target, fmt, interleaved, median, progress, ratio, write_photos

BATCHES = (1, 16)
QUICK_BATCHES = (1, 2)
# A batch-1 sample times this many calls, so that it is not lost in timer noise.
IMAGES_PER_SAMPLE = 4
ENGINE_VS_ORT_GOAL = 0.9
ENGINE_VS_EAGER_GOAL = 2.0


def run(*, quick: bool, repeats: int, sources: list[np.ndarray]) -> Section:
    """Measure and return the forward section."""
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
        (
            "batch",
            "mlupdated engine",
            "PyTorch eager",
            "PyTorch eager, 1 thread",
            "onnxruntime on export",
            "engine / best eager",
            "engine / onnxruntime",
        ),
    )
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as tmp:
        tmp_path = Path(tmp)
        progress("forward: building the PyTorch model and its ONNX export")
        model = build_torch_model(spec)
        default_threads = torch.get_num_threads()
        session = ort_session(export_onnx(model, tmp_path / "catdog.onnx"))
        predictor = Predictor(spec, path=model_path, cache=False)
        image_type = predictor.image_feature.type.imageType
        paths = write_photos(tmp_path / "photos", range(max(batches)), sources=sources)
        images = np.stack([load_tensor(p, image_type) for p in paths]).astype(np.float32)

        worst_ort, worst_eager = float("inf"), float("inf")
        for batch in batches:
            x = images[:batch]
            tensor = torch.from_numpy(x)

            def engine(x: np.ndarray = x) -> object:
                return predictor.predict_tensors({"image": x})

            def eager(tensor: torch.Tensor = tensor) -> object:
                torch.set_num_threads(default_threads)
                with torch.no_grad():
                    return model(tensor)

            def eager_1(tensor: torch.Tensor = tensor) -> object:
                torch.set_num_threads(1)
                with torch.no_grad():
                    return model(tensor)

            def export(x: np.ndarray = x) -> object:
                return session.run(None, {"image": x})

            progress(f"forward: batch {batch}, {repeats} interleaved repetitions")
            times = interleaved(
                {"engine": engine, "eager": eager, "eager_1": eager_1, "ort": export},
                repeats=repeats,
                inner=max(1, IMAGES_PER_SAMPLE // batch) if not quick else 1,
            )
            torch.set_num_threads(default_threads)
            rate = {name: batch / median(t) for name, t in times.items()}
            best_eager = max(rate["eager"], rate["eager_1"])
            section.rows.append(
                (
                    str(batch),
                    f"{fmt(rate['engine'])} img/s",
                    f"{fmt(rate['eager'])} img/s",
                    f"{fmt(rate['eager_1'])} img/s",
                    f"{fmt(rate['ort'])} img/s",
                    ratio(rate["engine"], best_eager),
                    ratio(rate["engine"], rate["ort"]),
                )
            )
            worst_ort = min(worst_ort, rate["engine"] / rate["ort"])
            worst_eager = min(worst_eager, rate["engine"] / best_eager)

        found = predictor.predict_tensors({"image": images})
        got = np.array([[p.probabilities[k] for k in ("Cat", "Dog")] for p in found])
        with torch.no_grad():
            want = model(torch.from_numpy(images)).numpy()
        theirs = session.run(None, {"image": images})[0]
    section.notes.append(
        f"Largest probability difference on the {len(images)} photos: engine vs PyTorch "
        f"{np.max(np.abs(got - want)):.1e}, "
        f"export vs PyTorch {np.max(np.abs(theirs - want)):.1e}."
    )
    section.notes.append(
        f"PyTorch eager runs twice: with torch's default {default_threads} threads and with "
        "1 thread (on a machine shared with other work, OpenMP threads that spin-wait can "
        "lose to one thread); the ratio is against the faster of the two. Onnxruntime "
        "sessions with default thread counts; the engine's session does not spin idle "
        "threads, the export's uses "
        "onnxruntime's defaults. Inputs are the same decoded 0..255 tensors for all three "
        "(decoding is not timed); the PyTorch module and the export include the scaler and "
        "the softmax, as the engine does."
    )
    section.targets.append(
        Target(
            "forward vs onnxruntime on export",
            f"≥ {ENGINE_VS_ORT_GOAL}× at every batch size",
            f"{worst_ort:.2f}× (worst batch)",
            worst_ort >= ENGINE_VS_ORT_GOAL,
            _short(worst_ort, ENGINE_VS_ORT_GOAL),
        )
    )
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


def _short(got: float, goal: float) -> str:
    return "" if got >= goal else f"{(1 - got / goal) * 100:.0f}% below the goal"
