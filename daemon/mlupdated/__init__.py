"""mlupdated: keep a Core ML image classifier personal to its owner."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__version__ = "0.1.0"

# onnxruntime starts a telemetry client when it is imported, which writes a device id
# and a database under the user's cache and a session file in the temp folder: data
# outside the workspace and our cache, about a user who asked for none of it. The
# variable must be set before onnxruntime's first import; the package's own import
# comes first in every process of ours, and children inherit it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def predict(
    model_path: str | os.PathLike[str], features: Mapping[str, Any], *, resize: str = "scaleFill"
) -> dict[str, Any]:
    """Run a Core ML model on one example: ``mlupdated.predict(path, {name: value})``.

    Inputs may be numbers (double), ints (int64), strings, dicts (dictionary inputs),
    nested lists or NumPy arrays (multi-arrays), or image file paths. Returns every
    output feature by name (floats, ints, strings, probability dicts, NumPy arrays).
    Errors are ``MlupdatedError`` with a one-line message (``FeatureError`` for an
    unknown, missing or ill-typed input). See ``engine.feature_command.predict``.
    """
    from .engine.feature_command import predict as _predict

    return _predict(model_path, features, resize=resize)


__all__ = ["__version__", "predict"]
