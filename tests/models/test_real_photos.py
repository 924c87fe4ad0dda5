"""The bundled model on real photographs it has never seen (``<pets>/eval``, the team's
shared photos): its accuracy out of the box, and what ten corrections do to it through
``mlupdated update``.

The figures are printed (run with ``-q`` and they still show) and asserted: accuracy
≥ 95 %; after relabelling ten photos of *different* animals to the other class and one
default update, at least nine of them carry their new label.

That second case is the opposite of what the head is built for (ten photos of one
animal, ``test_personalize_series.py``): the head learns what the corrected photos
share, so ten cats of ten breeds filed under ``Dog`` teach it that cats like those are
dogs, and it calls other cats dogs too (measured: 15.4 points lost on the untouched
photos for ten cats, 7.4 for ten dogs; the head before 2.0, which memorised photos, lost
none and generalised nothing). The bounds below guard that trade-off from getting
worse; README's "What ten corrections do" says it to users.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mlupdated import cli

from .photos import eval_photos

MIN_ACCURACY = 0.95
MIN_CLASS_ACCURACY = 0.90
MIN_RELABELLED = 9
# Guards on the measured drops (15.4 and 7.4 points), see the module docstring.
MAX_DROP_POINTS = {"ten cats called Dog": 20.0, "ten dogs called Cat": 12.0}
LABELS = ("Cat", "Dog")


def _predict(model: Path | None, photos: list[Path]) -> dict:
    """``mlupdated predict --json`` on ``photos``: path → label (every photo answered)."""
    args = ["predict", "--json"] + (["--model", str(model)] if model else [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*args, *map(str, photos)]) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    labels = {row["path"]: row["label"] for row in rows}
    assert len(labels) == len(photos)
    return labels


def _accuracy(labels: dict, photos: list[Path]) -> float:
    return sum(labels[str(p)] == p.parent.name for p in photos) / len(photos)


def _say(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[default model] {line}", flush=True)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return eval_photos("Cat") + eval_photos("Dog")


@pytest.fixture(scope="module")
def before(photos: list[Path]) -> dict:
    """The bundled model's labels for every evaluation photo."""
    return _predict(cli.bundled_model_path(), photos)


def test_accuracy_on_real_photos(
    photos: list[Path], before: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    cats = [p for p in photos if p.parent.name == "Cat"]
    dogs = [p for p in photos if p.parent.name == "Dog"]
    assert len(cats) >= 40 and len(dogs) >= 40
    overall, cat_acc, dog_acc = (_accuracy(before, group) for group in (photos, cats, dogs))
    wrong = sorted(Path(p).name for p in before if before[p] != Path(p).parent.name)
    _say(
        capsys,
        f"accuracy on {len(photos)} unseen photos: {overall:.1%} "
        f"(cats {cat_acc:.1%} of {len(cats)}, dogs {dog_acc:.1%} of {len(dogs)}); "
        f"wrong: {', '.join(wrong) or 'none'}",
    )
    assert overall >= MIN_ACCURACY
    assert min(cat_acc, dog_acc) >= MIN_CLASS_ACCURACY


def _relabelled(label: str, step: int) -> list[Path]:
    """Ten photos of ``label`` spread over its breeds (every ``step``-th by name)."""
    chosen = eval_photos(label)[::step][:10]
    assert len(chosen) == 10
    return chosen


# Cats are 60 photos (12 breeds), dogs 125 (25 breeds): these steps spread ten of each.
CASES = {"ten cats called Dog": ("Cat", 6), "ten dogs called Cat": ("Dog", 12)}


@pytest.fixture(scope="module", params=sorted(CASES))
def personalized(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One default ``mlupdated update`` of the bundled model on ten relabelled photos."""
    label, step = CASES[request.param]
    new_label = LABELS[1 - LABELS.index(label)]
    root = tmp_path_factory.mktemp("personalize")
    folder = root / "corrections" / new_label
    folder.mkdir(parents=True)
    chosen = _relabelled(label, step)
    for photo in chosen:
        shutil.copyfile(photo, folder / photo.name)
    out = root / "personal.mlmodel"
    model = str(cli.bundled_model_path())
    args = ["update", "--model", model, "--data", str(root / "corrections"), "--out", str(out)]
    assert cli.main(args) == 0
    return {"case": request.param, "chosen": chosen, "new_label": new_label, "model": out}


def test_ten_relabelled_photos_of_different_animals_are_learned(
    personalized: dict[str, Any],
    photos: list[Path],
    before: dict,
    capsys: pytest.CaptureFixture[str],
) -> None:
    after = _predict(personalized["model"], photos)
    chosen = personalized["chosen"]
    relabelled = sum(after[str(p)] == personalized["new_label"] for p in chosen)
    untouched = [p for p in photos if p not in chosen]
    acc_before, acc_after = _accuracy(before, untouched), _accuracy(after, untouched)
    drop = 100 * (acc_before - acc_after)
    _say(
        capsys,
        f"{personalized['case']}: {relabelled}/10 now {personalized['new_label']}; "
        f"untouched {len(untouched)} photos {acc_before:.1%} -> {acc_after:.1%} "
        f"(drop {drop:.1f} points)",
    )
    assert relabelled >= MIN_RELABELLED
    assert drop <= MAX_DROP_POINTS[personalized["case"]]


def test_predict_without_model_names_a_cat_and_a_dog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # not inside a workspace: the bundled model is used
    cat, dog = eval_photos("Cat")[0], eval_photos("Dog")[0]
    labels = _predict(None, [cat, dog])
    assert labels == {str(cat): "Cat", str(dog): "Dog"}
