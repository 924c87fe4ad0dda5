"""Small, seeded PyTorch versions of common image-classifier architectures.

Each has the shape of the real network (the blocks, the activations, the pooling and
concatenation patterns) at a few channels and 32-64 px, so conversion and comparison
stay fast. Every model ends with a softmax so coremltools emits a classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class Classifier(nn.Sequential):
    """``features`` → ``head`` (logits) → softmax; ``logits(x)`` skips the softmax."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__(features, head, nn.Softmax(dim=1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self[1](self[0](x))


# --- ResNet-18 ---------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3, 1)
        )
        self.down = (
            nn.Sequential(*conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.down(x))


def resnet18(classes: int, *, widths=(8, 16, 32, 64), in_ch: int = 3) -> Classifier:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, widths[0], 7, 2, 3, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = widths[0]
    for i, w in enumerate(widths):
        layers += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, classes))


# --- MobileNet v1 --------------------------------------------------------------------


def mobilenet_v1(classes: int, *, in_ch: int = 3) -> Classifier:
    def dws(cin: int, cout: int, s: int) -> list[nn.Module]:
        return [*conv_bn(cin, cin, 3, s, groups=cin), nn.ReLU(), *conv_bn(cin, cout, 1), nn.ReLU()]

    layers = [*conv_bn(in_ch, 8, 3, 2), nn.ReLU()]
    for cin, cout, s in [(8, 16, 1), (16, 24, 2), (24, 24, 1), (24, 32, 2), (32, 48, 2)]:
        layers += dws(cin, cout, s)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(48, classes))


# --- MobileNet v2 --------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2(classes: int, *, in_ch: int = 3) -> Classifier:
    layers: list[nn.Module] = [*conv_bn(in_ch, 8, 3, 2), nn.ReLU6()]
    for cin, cout, s, t in [
        (8, 8, 1, 1),
        (8, 12, 2, 4),
        (12, 12, 1, 4),
        (12, 16, 2, 4),
        (16, 16, 1, 4),
        (16, 24, 2, 4),
    ]:
        layers.append(InvertedResidual(cin, cout, s, t))
    layers += [*conv_bn(24, 64, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(
        nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))
    )


# --- MobileNet v3 small / EfficientNet-B0 ---------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, squeeze: int, *, inner: type[nn.Module], gate: type[nn.Module]):
        super().__init__()
        self.fc1 = nn.Conv2d(ch, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, ch, 1)
        self.inner, self.gate = inner(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.inner(self.fc1(s))))


class MBConv(nn.Module):
    """Expand 1x1 → depthwise k×k → (SE) → project 1x1, residual when shapes allow."""

    def __init__(self, cin, cout, k, s, expand, *, act, se_inner, se_gate, se: bool) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*conv_bn(cin, hidden, 1), act()]
        layers += [*conv_bn(hidden, hidden, k, s, groups=hidden), act()]
        if se:
            layers.append(SqueezeExcite(hidden, max(2, hidden // 4), inner=se_inner, gate=se_gate))
        layers += conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v3_small(classes: int, *, in_ch: int = 3) -> Classifier:
    hs, re = nn.Hardswish, nn.ReLU
    blocks = [
        MBConv(8, 8, 3, 2, 1, act=re, se_inner=nn.ReLU, se_gate=nn.Hardsigmoid, se=True),
        MBConv(8, 12, 3, 2, 4, act=re, se_inner=nn.ReLU, se_gate=nn.Hardsigmoid, se=False),
        MBConv(12, 12, 3, 1, 3, act=re, se_inner=nn.ReLU, se_gate=nn.Hardsigmoid, se=False),
        MBConv(12, 16, 5, 2, 4, act=hs, se_inner=nn.ReLU, se_gate=nn.Hardsigmoid, se=True),
        MBConv(16, 16, 5, 1, 3, act=hs, se_inner=nn.ReLU, se_gate=nn.Hardsigmoid, se=True),
    ]
    features = nn.Sequential(
        *conv_bn(in_ch, 8, 3, 2),
        hs(),
        *blocks,
        *conv_bn(16, 48, 1),
        hs(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(48, 64), hs(), nn.Dropout(0.2), nn.Linear(64, classes))
    return Classifier(features, head)


def efficientnet_b0(classes: int, *, in_ch: int = 3) -> Classifier:
    act = nn.SiLU
    kw = dict(act=act, se_inner=nn.SiLU, se_gate=nn.Sigmoid, se=True)
    blocks = [
        MBConv(8, 8, 3, 1, 1, **kw),
        MBConv(8, 12, 3, 2, 6, **kw),
        MBConv(12, 12, 3, 1, 6, **kw),
        MBConv(12, 16, 5, 2, 6, **kw),
        MBConv(16, 24, 3, 2, 6, **kw),
        MBConv(24, 24, 5, 1, 6, **kw),
    ]
    features = nn.Sequential(
        *conv_bn(in_ch, 8, 3, 2),
        act(),
        *blocks,
        *conv_bn(24, 64, 1),
        act(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return Classifier(features, nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes)))


# --- SqueezeNet ----------------------------------------------------------------------


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


def squeezenet(classes: int, *, in_ch: int = 3) -> Classifier:
    features = nn.Sequential(
        nn.Conv2d(in_ch, 16, 3, 2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(16, 4, 8),
        Fire(16, 4, 8),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(16, 8, 16),
        Fire(32, 8, 16),
    )
    head = nn.Sequential(
        nn.Dropout(0.5),
        nn.Conv2d(32, classes, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return Classifier(features, head)


# --- VGG -----------------------------------------------------------------------------


def vgg(classes: int, *, in_ch: int = 3) -> Classifier:
    layers: list[nn.Module] = []
    cin = in_ch
    for cout, repeat in [(8, 1), (16, 2), (32, 2)]:
        for _ in range(repeat):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    layers.append(nn.Flatten())
    head = nn.Sequential(
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, classes)
    )
    return Classifier(nn.Sequential(*layers), head)


# --- DenseNet ------------------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 2 * growth, 1, bias=False),
            nn.BatchNorm2d(2 * growth),
            nn.ReLU(),
            nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def densenet(classes: int, *, in_ch: int = 3, growth: int = 6) -> Classifier:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, 12, 3, 1, 1, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    ch = 12
    for block in range(3):
        for _ in range(3):
            layers.append(DenseLayer(ch, growth))
            ch += growth
        if block < 2:
            layers += [
                nn.BatchNorm2d(ch),
                nn.ReLU(),
                nn.Conv2d(ch, ch // 2, 1, bias=False),
                nn.AvgPool2d(2, 2),
            ]
            ch //= 2
    layers += [nn.BatchNorm2d(ch), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), nn.Linear(ch, classes))


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters, so
    the comparison exercises them (fresh layers have mean 0, variance 1)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
