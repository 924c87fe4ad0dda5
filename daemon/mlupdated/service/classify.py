"""Classify image files the way intake checked them: with its pixel limit and resize mode.

``Predictor.predict_paths`` decodes with the engine's default pixel limit and takes
only a resize mode. The inbox and the gate use :func:`classify_files` instead, so a
photo intake accepted (``intake.max_pixels``, which may be raised above the default)
is never refused later, and the model sees it fitted as training fits it
(``intake.resize``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import ImageError, UnsupportedModelError

BATCH_SIZE = 16


def classify_files(
    predictor: Any,
    paths: Sequence[str | os.PathLike[str]],
    *,
    resize: str,
    max_pixels: int | None,
) -> list[Any]:
    """One ``Prediction`` or ``PredictionFailure`` per path, in order (``max_pixels``
    ``None``: the engine's default limit)."""
    import numpy as np

    from ..coreml.images import DEFAULT_MAX_PIXELS, load_tensor
    from ..engine.predictor import PredictionFailure

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    feature = predictor.image_feature
    if feature is None:
        raise UnsupportedModelError("model has no image input", path=predictor.path)
    names = [str(p) for p in paths]
    results: list[Any] = [None] * len(names)
    pending: list[tuple[int, Any]] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack([tensor for _, tensor in pending])
        found = predictor.predict_tensors(
            {feature.name: batch}, paths=[names[i] for i, _ in pending]
        )
        for (i, _), prediction in zip(pending, found, strict=True):
            results[i] = prediction
        pending.clear()

    for i, name in enumerate(names):
        try:
            tensor = load_tensor(name, feature.type.imageType, resize=resize, max_pixels=limit)
        except ImageError as exc:
            results[i] = PredictionFailure(name, exc.reason)
            continue
        pending.append((i, tensor))
        if len(pending) >= BATCH_SIZE:
            flush()
    flush()
    return results
