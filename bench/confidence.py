"""Confidence: is the model honest about how sure it is, and does it say "neither"?

On the general photos (``<pets>/eval``, 185 photos the head never saw): the median
probability of the true label, and a reliability table (photos grouped by the
model's top probability: how often the top label was right in each group) with its
expected calibration error. On pictures of no pet (scikit-image's bundled photos and a
few drawn here: a chart, noise, stripes, a face-like drawing): the familiarity score
and whether the model says "neither".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import Section, Target, fmt, progress
from .personalize import PETS

BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SKIMAGE_NON_PETS = (
    "astronaut", "coffee", "rocket", "camera", "coins", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "retina", "logo", "colorwheel",
    "cell", "grass", "gravel", "brick", "horse",
)  # fmt: skip
GOAL_MEDIAN = 0.95


def run(*, quick: bool) -> Section:
    """The confidence section, measured on the bundled model."""
    from mlupdated import cli
    from mlupdated.engine.familiarity import familiarity, familiarity_threshold
    from mlupdated.engine.predictor import Predictor

    pets = PETS.find()
    if pets is None:
        raise RuntimeError(PETS.missing_reason())
    predictor = Predictor.from_path(cli.bundled_model_path())
    threshold = familiarity_threshold(predictor.spec)
    general = [p for label in ("Cat", "Dog") for p in sorted((pets / "eval" / label).iterdir())]
    if quick:
        general = general[:5] + general[-5:]
    progress(f"confidence: {len(general)} general photos")
    results = predictor.predict_paths(general)
    truth = [p.parent.name for p in general]
    p_true = np.array([r.probabilities[t] for r, t in zip(results, truth, strict=True)])
    top = np.array([max(r.probabilities.values()) for r in results])
    right = np.array([r.label == t for r, t in zip(results, truth, strict=True)])
    familiar = [familiarity(r.outputs, threshold) for r in results]

    section = Section(
        "Confidence (bundled model)",
        ("pictures", "group", "photos", "right", "mean top probability", "familiarity", "neither"),
    )
    ece = 0.0
    for low, high in zip(BINS[:-1], BINS[1:], strict=True):
        inside = (top >= low) & ((top < high) if high < 1.0 else (top <= high))
        if not inside.any():
            continue
        ece += inside.mean() * abs(right[inside].mean() - top[inside].mean())
        section.rows.append(
            (
                "general",
                f"top p in [{low:.2f}, {high:.2f}{']' if high == 1.0 else ')'}",
                str(int(inside.sum())),
                fmt(100 * right[inside].mean()) + " %",
                f"{top[inside].mean():.3f}",
                "",
                "",
            )
        )
    scores = [f.score for f in familiar if f is not None]
    flagged = sum(f.neither for f in familiar if f is not None)
    section.rows.append(
        (
            "general",
            "all",
            str(len(general)),
            fmt(100 * right.mean()) + " %",
            f"{top.mean():.3f}",
            f"min {min(scores):.3f}" if scores else "n/a",
            str(flagged),
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench-confidence-") as folder:
        pictures = _non_pet_pictures(Path(folder), quick=quick)
        progress(f"confidence: {len(pictures)} pictures of no pet")
        for path, result in zip(pictures, predictor.predict_paths(pictures), strict=True):
            signal = familiarity(result.outputs, threshold)
            section.rows.append(
                (
                    "no pet",
                    path.stem,
                    "1",
                    result.label,
                    f"{max(result.probabilities.values()):.3f}",
                    f"{signal.score:.3f}" if signal else "n/a",
                    "yes" if signal and signal.neither else "no",
                )
            )
    median = float(np.median(p_true))
    section.targets += [
        Target(
            "median probability of the true label (general photos)",
            f"≥ {GOAL_MEDIAN}",
            f"{median:.3f}",
            median >= GOAL_MEDIAN,
        ),
        Target("expected calibration error (general photos)", "reported", f"{ece:.3f}", True),
    ]
    section.notes.append(
        f"familiarity threshold {threshold}: below it a picture 'looks like neither'. "
        "The horse is scikit-image's silhouette of a horse: an animal, and familiar enough."
    )
    return section


def _non_pet_pictures(folder: Path, *, quick: bool) -> list[Path]:
    """scikit-image's bundled non-pet photos, and a few pictures drawn here."""
    import warnings

    from PIL import Image, ImageDraw
    from skimage import data

    paths = []
    names = SKIMAGE_NON_PETS[:3] if quick else SKIMAGE_NON_PETS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            array = np.asarray(getattr(data, name)())
            if array.dtype == bool:
                array = array.astype(np.uint8) * 255
            image = Image.fromarray(array).convert("RGB")
            paths.append(folder / f"{name}.png")
            image.save(paths[-1])
    rng = np.random.default_rng(0)
    drawn = {
        "noise": Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
        "stripes": Image.fromarray(
            np.tile((np.arange(256) // 16 % 2 * 255).astype(np.uint8)[None, :, None], (256, 1, 3))
        ),
    }
    chart = Image.new("RGB", (320, 240), "white")
    pen = ImageDraw.Draw(chart)
    for i, h in enumerate((80, 150, 60, 190, 120)):
        pen.rectangle((30 + i * 55, 220 - h, 70 + i * 55, 220), fill=(40, 90, 200))
    drawn["bar chart"] = chart
    face = Image.new("RGB", (256, 256), (250, 220, 180))
    pen = ImageDraw.Draw(face)
    pen.ellipse((40, 30, 216, 226), outline="black", width=4)
    pen.ellipse((85, 90, 105, 110), fill="black")
    pen.ellipse((150, 90, 170, 110), fill="black")
    pen.arc((90, 130, 170, 190), 20, 160, fill="black", width=4)
    drawn["drawn face"] = face
    for name, image in drawn.items():
        paths.append(folder / f"{name}.png")
        image.save(paths[-1])
    return paths
