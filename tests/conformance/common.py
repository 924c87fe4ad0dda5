"""Conversion and reference helpers for the conformance suite.

``convert`` turns a PyTorch classifier into a Core ML neural-network classifier the
way users do (``ct.convert`` of a traced module, ``neuralnetwork`` backend, iOS 13)
with an image input whose scale/bias carry the normalisation. ``torch_reference``
runs the PyTorch model on the very tensors the engine was fed, with the same
normalisation applied in torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlupdated.coreml import proto  # noqa: F401  (quiet coremltools import)

# ImageNet statistics, folded into Core ML's single scale and per-channel biases.
MEAN = (0.485, 0.456, 0.406)
STD = 0.226
GRAY_MEAN = (0.449,)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")


@dataclass(frozen=True)
class Normalisation:
    """``y = scale · x + bias[c]`` on 0..255 input, in the tensor's channel order."""

    scale: float
    bias: tuple[float, ...]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.tensor(self.bias, dtype=torch.float32).view(1, -1, 1, 1)
        return x * self.scale + bias


def normalisation(color: str) -> Normalisation:
    """ImageNet-like normalisation for a colour layout (BGR reverses the biases)."""
    mean = GRAY_MEAN if color == "GRAYSCALE" else MEAN
    bias = tuple(-m / STD for m in mean)
    if color == "BGR":
        bias = bias[::-1]
    return Normalisation(scale=1.0 / (255.0 * STD), bias=bias)


def channels(color: str) -> int:
    return 1 if color == "GRAYSCALE" else 3


def convert(model: torch.nn.Module, *, size: int, color: str, labels: Sequence[str | int]) -> Any:
    """The Core ML spec of ``model`` as an image classifier."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        import coremltools as ct

        norm = normalisation(color)
        example = torch.rand(1, channels(color), size, size)
        traced = torch.jit.trace(model.eval(), example)
        mlmodel = ct.convert(
            traced,
            inputs=[
                ct.ImageType(
                    name="image",
                    shape=example.shape,
                    scale=norm.scale,
                    bias=norm.bias[0] if color == "GRAYSCALE" else list(norm.bias),
                    color_layout=getattr(ct.colorlayout, color),
                )
            ],
            classifier_config=ct.ClassifierConfig(list(labels)),
            convert_to="neuralnetwork",
            minimum_deployment_target=ct.target.iOS13,
        )
    return mlmodel.get_spec()


def save_photos(directory: Path) -> list[Path]:
    """Real photographs shipped with scikit-image, written as JPEG and PNG files."""
    from PIL import Image
    from skimage import data

    paths = []
    for i, name in enumerate(PHOTOS):
        array = getattr(data, name)()
        image = Image.fromarray(array)
        suffix = ".jpg" if i % 2 else ".png"
        path = directory / f"{name}{suffix}"
        image.save(path, quality=92) if suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def torch_reference(
    model: torch.nn.Module, tensors: np.ndarray, color: str
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, logits) of ``model`` on float32 ``[N, C, H, W]`` 0..255 tensors."""
    x = normalisation(color).apply(torch.from_numpy(np.ascontiguousarray(tensors)))
    with torch.no_grad():
        logits = model.logits(x)
        probs = torch.softmax(logits, dim=1)
    return probs.numpy(), logits.numpy()
