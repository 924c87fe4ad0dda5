"""A PyTorch reading of the bundled model's spec: the reference our engine must match.

It interprets exactly the layer kinds the default model uses (padding, convolution,
clip, add, global average pooling, bias, innerProduct, l2normalize, softmax, reduce
max over channels) straight from the protobuf, decoding float32 and float16 weights
itself, and refuses anything else, so it cannot silently differ from the spec. It
shares no code with the ONNX engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def decode(params: Any) -> np.ndarray:
    """A WeightParams message as a float32 array (float32 or float16 storage only)."""
    if len(params.floatValue):
        return np.asarray(params.floatValue, dtype=np.float32)
    if len(params.float16Value):
        return np.frombuffer(params.float16Value, dtype="<f2").astype(np.float32)
    raise ValueError("reference only decodes float32 and float16 weights")


def _tensor(params: Any, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(decode(params).reshape(shape).copy())


def _padding(layer: Any, x: torch.Tensor) -> torch.Tensor:
    p = layer.padding
    if p.WhichOneof("PaddingType") != "constant":
        raise ValueError(f"{layer.name}: only constant padding")
    (top, bottom), (left, right) = (
        (b.startEdgeSize, b.endEdgeSize) for b in p.paddingAmounts.borderAmounts
    )
    return F.pad(x, (left, right, top, bottom), value=p.constant.value)


def _convolution(layer: Any, x: torch.Tensor) -> torch.Tensor:
    c = layer.convolution
    if c.isDeconvolution or c.WhichOneof("ConvolutionPaddingType") != "valid":
        raise ValueError(f"{layer.name}: only valid, non-transposed convolutions")
    if any(b.startEdgeSize or b.endEdgeSize for b in c.valid.paddingAmounts.borderAmounts):
        raise ValueError(f"{layer.name}: padded valid convolution")
    groups = max(1, c.nGroups)
    kh, kw = c.kernelSize
    weight = _tensor(c.weights, (c.outputChannels, c.kernelChannels, kh, kw))
    bias = _tensor(c.bias, (c.outputChannels,)) if c.hasBias else None
    dilation = tuple(c.dilationFactor) or (1, 1)
    return F.conv2d(x, weight, bias, stride=tuple(c.stride), dilation=dilation, groups=groups)


def _pooling(layer: Any, x: torch.Tensor) -> torch.Tensor:
    p = layer.pooling
    if not p.globalPooling or p.type != p.AVERAGE:
        raise ValueError(f"{layer.name}: only global average pooling")
    return x.mean(dim=(2, 3), keepdim=True)


def _inner_product(layer: Any, x: torch.Tensor) -> torch.Tensor:
    ip = layer.innerProduct
    weight = _tensor(ip.weights, (ip.outputChannels, ip.inputChannels))
    y = x.flatten(1) @ weight.T
    if ip.hasBias:
        y = y + _tensor(ip.bias, (ip.outputChannels,))
    return y[:, :, None, None]


def _bias(layer: Any, x: torch.Tensor) -> torch.Tensor:
    # Core ML: the bias has shape [1], [C], [1, H, W] or [C, H, W] and broadcasts.
    shape = tuple(int(d) for d in layer.bias.shape)
    if len(shape) == 1:
        shape = (shape[0], 1, 1)
    if len(shape) != 3:
        raise ValueError(f"{layer.name}: bias shape {tuple(layer.bias.shape)}")
    return x + _tensor(layer.bias.bias, shape)[None]


def _reduce(layer: Any, x: torch.Tensor) -> torch.Tensor:
    r = layer.reduce
    if r.mode != r.MAX or r.axis != r.C:
        raise ValueError(f"{layer.name}: only reduce max over C")
    return x.amax(dim=1, keepdim=True)


def run_layer(layer: Any, inputs: list[torch.Tensor]) -> torch.Tensor:
    """One layer of the default model's spec on NCHW tensors."""
    kind = layer.WhichOneof("layer")
    if kind == "padding":
        return _padding(layer, inputs[0])
    if kind == "convolution":
        return _convolution(layer, inputs[0])
    if kind == "clip":
        return inputs[0].clamp(layer.clip.minVal, layer.clip.maxVal)
    if kind == "add" and len(inputs) == 2:
        return inputs[0] + inputs[1]
    if kind == "pooling":
        return _pooling(layer, inputs[0])
    if kind == "bias":
        return _bias(layer, inputs[0])
    if kind == "innerProduct":
        return _inner_product(layer, inputs[0])
    if kind == "l2normalize":
        # Core ML: x / sqrt(sum of squares over C, H, W + epsilon).
        x = inputs[0]
        squares = (x * x).sum(dim=(1, 2, 3), keepdim=True)
        return x / torch.sqrt(squares + layer.l2normalize.epsilon)
    if kind == "softmax":
        return torch.softmax(inputs[0], dim=1)
    if kind == "reduce":
        return _reduce(layer, inputs[0])
    raise ValueError(f"{layer.name}: reference does not know layer type {kind}")


def preprocess(spec: Any, images: np.ndarray) -> torch.Tensor:
    """Apply the spec's scaler to float RGB images ``[N, 3, H, W]`` in 0..255."""
    network = spec.neuralNetworkClassifier
    (pre,) = network.preprocessing
    scaler = pre.scaler
    bias = torch.tensor([scaler.redBias, scaler.greenBias, scaler.blueBias])
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    return x * scaler.channelScale + bias[None, :, None, None]


def forward(spec: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every blob of the network for a batch of images (float64 not needed: float32)."""
    network = spec.neuralNetworkClassifier
    image_name = spec.description.input[0].name
    blobs: dict[str, torch.Tensor] = {image_name: preprocess(spec, images)}
    with torch.no_grad():
        for layer in network.layers:
            blobs[layer.output[0]] = run_layer(layer, [blobs[name] for name in layer.input])
    return {name: value.numpy() for name, value in blobs.items()}


def probabilities(spec: Any, images: np.ndarray) -> np.ndarray:
    """Class probabilities ``[N, labels]`` in the order of the spec's labels."""
    network = spec.neuralNetworkClassifier
    blob = network.labelProbabilityLayerName
    return forward(spec, images)[blob].reshape(len(images), -1)
