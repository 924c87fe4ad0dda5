"""The image scaler folded into the first convolution's weights (one pass over the
image fewer) computes what PyTorch computes on the normalised image, with the
convolution's own padding, with a zero-padding layer in front of it, and in the
colour layouts whose biases differ per channel; an image read by two layers keeps its
separate scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session
from torch import nn

from .common import channels, convert, normalisation

SIZE = 24
LABELS = ["a", "b", "c", "d"]


class _Net(nn.Module):
    def __init__(self, stem: nn.Module, width: int, *, shared: bool = False) -> None:
        super().__init__()
        self.stem = stem
        self.other = nn.Conv2d(stem_in(stem), width, 3, padding=1) if shared else None
        self.head = nn.Linear(width, len(LABELS))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        if self.other is not None:
            y = y + self.other(x)
        return self.head(torch.relu(y).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def stem_in(stem: nn.Module) -> int:
    return next(m for m in stem.modules() if isinstance(m, nn.Conv2d)).in_channels


def _stem(kind: str, cin: int) -> nn.Module:
    if kind == "conv pads":
        return nn.Conv2d(cin, 8, 3, padding=1)
    if kind == "zero-pad layer":
        return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, 8, 3, stride=2))
    if kind == "strided, no bias":
        return nn.Conv2d(cin, 8, 5, stride=2, padding=2, bias=False)
    raise ValueError(kind)


@pytest.mark.parametrize("color", ["RGB", "BGR", "GRAYSCALE"])
@pytest.mark.parametrize("kind", ["conv pads", "zero-pad layer", "strided, no bias", "shared"])
def test_folded_scaler_matches_pytorch(kind: str, color: str) -> None:
    torch.manual_seed(0)
    cin = channels(color)
    shared = kind == "shared"
    stem = _stem("conv pads" if shared else kind, cin)
    model = _Net(stem, 8, shared=shared).eval()
    spec = convert(model, size=SIZE, color=color, labels=LABELS)
    layers = spec.neuralNetworkClassifier.layers
    logits_blob = layers[-1].input[0]  # the softmax reads the logits
    graph = compile_network(spec, outputs=[logits_blob])
    ops = [node.op_type for node in graph.graph.node]
    # Folded: no multiply of the raw image left; shared: the scale stays a Mul.
    assert ("Mul" in ops) == shared, ops
    x = np.random.default_rng(1).uniform(0, 255, (2, cin, SIZE, SIZE)).astype(np.float32)
    got = Session(graph).run({"image": x})[logits_blob].reshape(2, -1)
    with torch.no_grad():
        want = model.logits(normalisation(color).apply(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
