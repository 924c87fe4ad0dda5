"""The real photographs the default model's tests can use.

Only scikit-image's bundled sample photos are available offline with a clear licence:
one cat (``chelsea``) and a few non-pet scenes. No real dog photograph is available,
so the tests that need one are not written (see NOTICE.md and the issue notes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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
