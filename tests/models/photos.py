"""The real photographs the default model's tests use.

- ``<pets>/eval``: 60 cat and 125 dog photos (Oxford-IIIT Pet, CC BY-SA 4.0), one folder
  per label, never seen by the model's build. ``<pets>`` is the team's shared folder
  (``../shared/pets`` or ``$MLUPDATED_PETS``; see tests/helpers/shared_data.py): tests
  that need it skip where it is absent;
- scikit-image's sample photos: a cat (``chelsea``) and a few non-pet scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.shared_data import PETS, require

CAT_PHOTOS = ("chelsea",)
NON_PET_PHOTOS = ("astronaut", "coffee", "rocket")
MODEL_SIZE = 224


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as an RGB uint8 array ``[H, W, 3]``."""
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())[..., :3]


def save_photo(name: str, directory: Path, *, suffix: str = ".jpg") -> Path:
    """Write a sample photo as a file (JPEG by default, as a camera would)."""
    path = directory / f"{name}{suffix}"
    Image.fromarray(photo(name)).save(path, quality=95)
    return path


def model_sized(name: str) -> np.ndarray:
    """A sample photo already at the model's size, as float32 ``[3, 224, 224]`` 0..255.

    Resizing here (not in the engine) keeps engine-versus-reference comparisons about
    the network alone.
    """
    image = Image.fromarray(photo(name)).resize((MODEL_SIZE, MODEL_SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1).copy()


def eval_photos(label: str) -> list[Path]:
    """The evaluation photos of one label (``Cat`` or ``Dog``), sorted by name."""
    folder = require(PETS) / "eval" / label
    found = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    assert found, f"no photo under {folder}"
    return found


def file_model_sized(path: Path) -> np.ndarray:
    """A photo file at the model's size, as float32 ``[3, 224, 224]`` 0..255."""
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((MODEL_SIZE, MODEL_SIZE), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1).copy()
