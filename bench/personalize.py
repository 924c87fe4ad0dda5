"""Personalization: ten corrections of one animal, then the other photos of it.

Draw protocol. Each series under ``<pets-breeds>/<Breed>/`` (40 photos of one breed)
stands in for one household's animal. A draw takes 10 photos of a series (seeded) as
the owner's corrections, filed under the series' true label, and keeps the other 30 as
held-out photos of the same animal. One default update (``run_update``, the model's
own parameters, its rehearsal set when it carries one) makes the new model. Reported
per draw: held-out accuracy before and after, the corrected photos after, and accuracy
on the general photos (``<pets>/eval``, 185 photos of all 37 breeds) before and after.

Two settings:
- ``shipped``: the model as given (``--model``, default the bundled one);
- ``unseen breed``: the bundled model's head refitted by the build script without the
  series' breed (its fit photos left out, and its eval photos left out of the general
  set), so the animal is one the model has never seen: the case the product is for.

A "two animals" row corrects a cat series and a dog series in one update.

The trained part runs in the engine's own trainer; predictions of the head come from
the engine's suffix network on the frozen prefix's features (computed once per photo),
which is what a full prediction computes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import Section, Target, fmt, progress

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.shared_data import PETS, PETS_BREEDS  # noqa: E402

CORRECTIONS = 10
DRAWS, QUICK_DRAWS = 3, 1
QUICK_SERIES, QUICK_GENERAL = 2, 10
TWO_ANIMALS = (("Sphynx", "miniature_pinscher"), ("Bombay", "chihuahua"))
GOAL_HELD_OUT_MEAN, GOAL_HELD_OUT_MIN, GOAL_GENERAL_DROP = 0.95, 0.90, 0.01


def series_label(breed: str) -> str:
    """Cat or Dog: Oxford-IIIT names cat breeds with a capital letter, dogs without."""
    return "Cat" if breed[:1].isupper() else "Dog"


def draw(count: int, breed: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(corrected, held-out) indices of draw ``index`` of a series of ``count`` photos."""
    seed = [index, *breed.encode()]
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:CORRECTIONS]), np.sort(order[CORRECTIONS:])


def breed_of(path: Path) -> str:
    """``Sphynx_12.jpg`` → ``sphynx`` (Oxford-IIIT file names)."""
    return path.stem.rsplit("_", 1)[0].lower()


class Photos:
    """Every photo the section uses, with the engine's prefix features computed once."""

    def __init__(self, spec: object, *, quick: bool) -> None:
        from mlupdated.train.cache import FeatureCache
        from mlupdated.train.data import Example
        from mlupdated.train.features import compute_features
        from mlupdated.train.split import split_network

        pets, breeds = PETS.find(), PETS_BREEDS.find()
        if pets is None or breeds is None:
            raise RuntimeError(
                PETS.missing_reason() if pets is None else PETS_BREEDS.missing_reason()
            )
        per_label = QUICK_GENERAL if quick else None
        self.general = [
            (p, label)
            for label in ("Cat", "Dog")
            for p in sorted((pets / "eval" / label).iterdir())[:per_label]
        ]
        folders = [d for d in sorted(breeds.iterdir()) if d.is_dir()]
        if quick:  # one cat and one dog series
            folders = [
                next(d for d in folders if series_label(d.name) == label)
                for label in ("Cat", "Dog")
            ]
        self.series = {
            d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            for d in folders
        }
        self.fit = [
            (p, label) for label in ("Cat", "Dog") for p in sorted((pets / "fit" / label).iterdir())
        ]
        paths = [p for p, _ in self.general] + [p for s in self.series.values() for p in s]
        self._cache_dir = tempfile.TemporaryDirectory(prefix="bench-personalize-")
        self.cache = FeatureCache(Path(self._cache_dir.name))
        split = split_network(spec)
        examples = [Example(p, "Cat") for p in paths]
        progress(f"personalize: prefix features of {len(paths)} photos")
        features, used, _ = compute_features(
            spec, split, examples, cache=self.cache, resize="scaleFill"
        )
        self.index = {paths[i]: row for row, i in enumerate(used)}
        self.features = features

    def rows(self, paths: list[Path]) -> dict[str, np.ndarray]:
        """The prefix features of ``paths`` (stacked)."""
        index = [self.index[p] for p in paths]
        return {name: values[index] for name, values in self.features.items()}


def accuracy(spec: object, photos: Photos, paths: list[Path], labels: list[str]) -> float:
    """Share of ``paths`` the model's head labels as ``labels``."""
    from mlupdated.coreml.spec import class_labels
    from mlupdated.train.network import SuffixNetwork
    from mlupdated.train.split import split_network

    if not paths:
        return float("nan")
    network = SuffixNetwork(spec, split_network(spec))
    probabilities = np.asarray(network.forward(photos.rows(paths)).data).reshape(len(paths), -1)
    names = [str(label) for label in class_labels(spec)]
    predicted = [names[i] for i in probabilities.argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def update(spec: object, photos: Photos, corrections: list[tuple[Path, str]]) -> object:
    """One default update of ``spec`` on the corrections (the engine's trainer)."""
    from mlupdated.train.data import Example
    from mlupdated.train.task import run_update

    examples = [Example(p, label) for p, label in corrections]
    return run_update(spec, examples, cache=photos.cache).spec


def run(*, quick: bool, model: Path | None = None) -> Section:
    """The personalize section (``model``: the shipped setting's model file)."""
    from mlupdated import cli
    from mlupdated.coreml.spec import load_spec

    shipped = load_spec(model or cli.bundled_model_path())
    photos = Photos(shipped, quick=quick)
    general_paths = [p for p, _ in photos.general]
    general_labels = [label for _, label in photos.general]
    draws = QUICK_DRAWS if quick else DRAWS
    breeds = list(photos.series)
    section = Section(
        "Personalization (10 corrections of one animal, default update)",
        (
            "setting",
            "series",
            "draw",
            "held-out before",
            "after",
            "corrected",
            "general before",
            "after",
        ),
    )
    results: dict[str, list[tuple[float, float, float, float, float]]] = {}
    refit = Refit(photos) if model is None else None
    settings = ["shipped"] + (["unseen breed"] if refit is not None else [])
    for setting in settings:
        for breed in breeds:
            base = shipped if setting == "shipped" else refit.without(breed)
            keep = [
                i
                for i, p in enumerate(general_paths)
                if setting == "shipped" or breed_of(p) != breed.lower()
            ]
            g_paths = [general_paths[i] for i in keep]
            g_labels = [general_labels[i] for i in keep]
            general_before = accuracy(base, photos, g_paths, g_labels)
            series = photos.series[breed]
            label = series_label(breed)
            for index in range(draws):
                corrected, held = draw(len(series), breed, index)
                fixed = [series[i] for i in corrected]
                others = [series[i] for i in held]
                progress(f"personalize: {setting}, {breed} draw {index}")
                after = update(base, photos, [(p, label) for p in fixed])
                row = (
                    accuracy(base, photos, others, [label] * len(others)),
                    accuracy(after, photos, others, [label] * len(others)),
                    accuracy(after, photos, fixed, [label] * len(fixed)),
                    general_before,
                    accuracy(after, photos, g_paths, g_labels),
                )
                results.setdefault(setting, []).append(row)
                section.rows.append(
                    (setting, breed, str(index), *(fmt(100 * v) + " %" for v in row))
                )
        mean = np.mean(results[setting], axis=0)
        low = np.min(results[setting], axis=0)
        section.rows.append((setting, "**mean**", "", *(f"**{fmt(100 * v)} %**" for v in mean)))
        section.rows.append((setting, "min", "", *(fmt(100 * v) + " %" for v in low)))
    if not quick:
        _two_animals(section, photos, shipped, refit, general_paths, general_labels)
    worst = results.get("unseen breed") or results["shipped"]
    values = np.array(worst)
    section.targets += [
        Target(
            "held-out accuracy after 10 corrections (mean)",
            f"≥ {GOAL_HELD_OUT_MEAN:.2f}",
            f"{values[:, 1].mean():.3f}",
            bool(values[:, 1].mean() >= GOAL_HELD_OUT_MEAN),
        ),
        Target(
            "held-out accuracy after 10 corrections (every draw)",
            f"≥ {GOAL_HELD_OUT_MIN:.2f}",
            f"{values[:, 1].min():.3f}",
            bool(values[:, 1].min() >= GOAL_HELD_OUT_MIN),
        ),
        Target(
            "general accuracy drop",
            f"≤ {100 * GOAL_GENERAL_DROP:.0f} point",
            f"{100 * (values[:, 3] - values[:, 4]).max():.1f}",
            bool((values[:, 3] - values[:, 4]).max() <= GOAL_GENERAL_DROP + 1e-9),
        ),
    ]
    section.notes.append(
        "Series: 40 photos each of 12 breeds (Oxford-IIIT Pet); 10 corrected, 30 held out; "
        "general: the 185 eval photos. 'unseen breed': the head refitted without that breed."
    )
    return section


def _two_animals(section, photos, shipped, refit, general_paths, general_labels) -> None:
    for cat, dog in TWO_ANIMALS:
        if cat not in photos.series or dog not in photos.series:
            continue
        base = refit.without(cat, dog) if refit is not None else shipped
        setting = "unseen, two animals" if refit is not None else "two animals"
        gone = {cat.lower(), dog.lower()} if refit is not None else set()
        keep = [i for i, p in enumerate(general_paths) if breed_of(p) not in gone]
        g_paths = [general_paths[i] for i in keep]
        g_labels = [general_labels[i] for i in keep]
        s_cat, s_dog = photos.series[cat], photos.series[dog]
        c_fix, c_held = draw(len(s_cat), cat, 0)
        d_fix, d_held = draw(len(s_dog), dog, 0)
        fixed = [(s_cat[i], "Cat") for i in c_fix] + [(s_dog[i], "Dog") for i in d_fix]
        held = [(s_cat[i], "Cat") for i in c_held] + [(s_dog[i], "Dog") for i in d_held]
        progress(f"personalize: {setting}, {cat} + {dog}")
        after = update(base, photos, fixed)
        h_paths, h_labels = [p for p, _ in held], [label for _, label in held]
        f_paths, f_labels = [p for p, _ in fixed], [label for _, label in fixed]
        row = (
            accuracy(base, photos, h_paths, h_labels),
            accuracy(after, photos, h_paths, h_labels),
            accuracy(after, photos, f_paths, f_labels),
            accuracy(base, photos, g_paths, g_labels),
            accuracy(after, photos, g_paths, g_labels),
        )
        section.rows.append((setting, f"{cat} + {dog}", "0", *(fmt(100 * v) + " %" for v in row)))


class Refit:
    """The bundled model with its head refitted by the build script on a subset of the
    fit photos (leave some breeds out): prefix features at ``features`` from the engine."""

    def __init__(self, photos: Photos) -> None:
        from mlupdated import cli
        from mlupdated.coreml.images import load_tensor
        from mlupdated.coreml.spec import load_spec
        try:
            from mlupdated.engine.graph_cache import load_session
        except ImportError:  # an engine from before the graph cache had a module of its own
            from mlupdated.engine.runtime import load_session  # type: ignore[no-redef]

        self.build = _build_module()
        self.spec = load_spec(cli.bundled_model_path())
        image = self.spec.description.input[0]
        session = load_session(self.spec, outputs=[self.build.FEATURES_BLOB])
        paths = [p for p, _ in photos.fit]
        progress(f"personalize: pooled features of {len(paths)} fit photos")
        rows = []
        for start in range(0, len(paths), 16):
            batch = np.stack(
                [load_tensor(p, image.type.imageType) for p in paths[start : start + 16]]
            )
            (out,) = session.run({image.name: batch}).values()
            rows.append(np.asarray(out, dtype=np.float64).reshape(len(batch), -1))
        self.features = np.concatenate(rows)
        self.labels = np.array([0.0 if label == "Cat" else 1.0 for _, label in photos.fit])
        self.breeds = np.array([breed_of(p) for p in paths])

    def without(self, *breeds: str) -> object:
        """The model whose head was fitted without ``breeds``' fit photos."""
        from mlupdated.coreml.proto import Model_pb2
        from mlupdated.train.rehearsal import METADATA_KEY

        keep = ~np.isin(self.breeds, [b.lower() for b in breeds])
        head = self.build.fit_head(self.features[keep], self.labels[keep])
        spec = Model_pb2.Model()
        spec.CopyFrom(self.spec)
        layers = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
        _set(layers["centre"].bias.bias, head["centre_b"])
        _set(layers["classify"].innerProduct.weights, head["classify_w"])
        _set(layers["classify"].innerProduct.bias, head["classify_b"])
        familiar = layers["familiar"].innerProduct
        familiar.outputChannels = len(head["familiar_w"])
        _set(familiar.weights, head["familiar_w"])
        entry = json.loads(spec.description.metadata.userDefined[METADATA_KEY])
        entry["labels"] = [self.build.LABELS[int(v)] for v in head["familiar_labels"]]
        spec.description.metadata.userDefined[METADATA_KEY] = json.dumps(entry)
        return spec


def _set(params: object, values: np.ndarray) -> None:
    del params.floatValue[:]  # type: ignore[attr-defined]
    params.floatValue.extend(np.asarray(values, dtype=np.float32).reshape(-1).tolist())  # type: ignore[attr-defined]


def _build_module() -> object:
    script = REPO / "tools" / "build_default_model.py"
    spec = importlib.util.spec_from_file_location("build_default_model", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
