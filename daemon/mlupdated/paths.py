"""Where mlupdated keeps derived data that can always be rebuilt (the cache)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MLUPDATED_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """The cache directory (``$MLUPDATED_CACHE_DIR``, else the XDG cache), created on use.

    Holds compiled ONNX graphs and the feature cache; deleting it costs only time.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mlupdated"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    return path


DEFAULT_MODEL_NAME = "CatDogUpdatable.mlmodel"


def bundled_model_path() -> Path:
    """The default model that ships inside the package."""
    return Path(__file__).resolve().parent / "models" / DEFAULT_MODEL_NAME
