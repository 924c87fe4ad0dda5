"""A PyTorch twin of a small updatable spec, trained the way DESIGN.md says an update
runs (mean loss per mini-batch, partial last batch kept, the same example order).

It interprets the spec's layers with ``torch.nn.functional`` (the layer kinds the test
builder makes), from the spec's own weights, so it shares no code with ``train/``
except the exposed permutation function that fixes the shuffled order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from mlupdated.coreml.params import update_parameters
from mlupdated.coreml.spec import class_labels
from mlupdated.coreml.weights import decode_weights
from mlupdated.train.task import epoch_order


def _nn(spec):
    return getattr(spec, spec.WhichOneof("Type"))


class TorchTwin:
    """Weights of the spec as torch tensors; ``trainable`` maps layer → (W, b)."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.nn = _nn(spec)
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for layer in self.nn.layers:
            kind = layer.WhichOneof("layer")
            p = getattr(layer, kind)
            if kind == "convolution":
                shape = (p.outputChannels, p.kernelChannels, *p.kernelSize)
            elif kind == "innerProduct":
                shape = (p.outputChannels, p.inputChannels)
            else:
                continue
            w = decode_weights(p.weights, count=math.prod(shape)).reshape(shape)
            b = decode_weights(p.bias, count=shape[0]) if p.hasBias else None
            grad = bool(layer.isUpdatable)
            wt = torch.tensor(w, requires_grad=grad)
            bt = torch.tensor(b, requires_grad=grad) if b is not None else None
            self.tensors[layer.name] = (wt, bt)

    def params(self) -> list[torch.Tensor]:
        out = []
        for layer in self.nn.layers:
            if layer.isUpdatable:
                w, b = self.tensors[layer.name]
                out += [w] + ([b] if b is not None else [])
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        blobs = {}
        name = self.spec.description.input[0].name
        pre = list(self.nn.preprocessing)
        if pre and pre[0].WhichOneof("preprocessor") == "scaler":
            s = pre[0].scaler
            bias = torch.tensor([s.redBias, s.greenBias, s.blueBias]).reshape(1, 3, 1, 1)
            x = x * (s.channelScale or 1.0) + bias
        blobs[name] = x
        for layer in self.nn.layers:
            kind = layer.WhichOneof("layer")
            p = getattr(layer, kind)
            a = blobs[layer.input[0]]
            if kind == "convolution":
                w, b = self.tensors[layer.name]
                assert p.WhichOneof("ConvolutionPaddingType") == "same"
                kh, kw = p.kernelSize
                a = F.pad(a, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
                y = F.conv2d(a, w, b, stride=tuple(p.stride))
            elif kind == "innerProduct":
                w, b = self.tensors[layer.name]
                y = F.linear(a.reshape(a.shape[0], -1), w, b).reshape(a.shape[0], -1, 1, 1)
            elif kind == "activation":
                y = torch.relu(a)
            elif kind == "pooling":
                y = F.max_pool2d(a, tuple(p.kernelSize), tuple(p.stride))
            elif kind == "flatten":
                y = a.reshape(a.shape[0], -1, 1, 1)
            elif kind == "softmax":
                blobs["__logits__"] = a
                y = torch.softmax(a, dim=1)
            else:
                raise NotImplementedError(kind)
            blobs[layer.output[0]] = y
        return blobs

    def loss(self, x: torch.Tensor, target) -> torch.Tensor:
        blobs = self.forward(x)
        loss = self.nn.updateParams.lossLayers[0]
        if loss.WhichOneof("LossLayerType") == "categoricalCrossEntropyLossLayer":
            logits = blobs["__logits__"].reshape(x.shape[0], -1)
            return F.cross_entropy(logits, target)
        out = blobs[loss.meanSquaredErrorLossLayer.input]
        return F.mse_loss(out.reshape(target.shape), target)


def train_like_update(twin: TorchTwin, inputs: np.ndarray, labels: list, overrides=None):
    """Train ``twin`` as an update of its spec would; return the mini-batch losses."""
    params = update_parameters(twin.spec)
    values = params.resolve(overrides)
    if params.optimizer == "sgd":
        opt = torch.optim.SGD(
            twin.params(), lr=values["learning_rate"], momentum=values["momentum"]
        )
    else:
        opt = torch.optim.Adam(
            twin.params(),
            lr=values["learning_rate"],
            betas=(values["beta1"], values["beta2"]),
            eps=values["eps"],
        )
    names = class_labels(twin.spec)
    if names:
        target_all = torch.tensor([names.index(label) for label in labels])
    else:
        target_all = torch.tensor(np.stack(labels).astype(np.float32))
    x_all = torch.tensor(inputs)
    losses = []
    n, size = len(inputs), values["mini_batch_size"]
    for epoch in range(values["epochs"]):
        order = epoch_order(n, shuffle=values["shuffle"], seed=values["seed"], epoch=epoch)
        for start in range(0, n, size):
            idx = torch.tensor(order[start : start + size])
            opt.zero_grad()
            loss = twin.loss(x_all[idx], target_all[idx])
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return losses


def trained_weights(twin: TorchTwin) -> dict[str, np.ndarray]:
    out = {}
    for layer in twin.nn.layers:
        if layer.isUpdatable:
            w, b = twin.tensors[layer.name]
            out[f"{layer.name}/W"] = w.detach().numpy().reshape(-1)
            out[f"{layer.name}/b"] = b.detach().numpy().reshape(-1)
    return out


def spec_weights(spec) -> dict[str, np.ndarray]:
    out = {}
    for layer in _nn(spec).layers:
        if layer.isUpdatable:
            p = getattr(layer, layer.WhichOneof("layer"))
            out[f"{layer.name}/W"] = decode_weights(p.weights, count=None)
            out[f"{layer.name}/b"] = decode_weights(p.bias, count=None)
    return out
