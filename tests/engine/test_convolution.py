"""convolution and deconvolution against PyTorch: groups and depthwise, dilation,
strides, explicit asymmetric padding, Core ML's "same" padding in both asymmetry
modes, deconvolution with outputShape, and torch modules converted by coremltools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from .helpers import assert_close, rng, run_one_layer, run_spec
from .torch_convert import convert_module


def _conv_layer(w: np.ndarray, bias: np.ndarray | None, *, groups: int, **kw):
    c_out, k_ch, kh, kw_ = w.shape

    def add(b):
        b.add_convolution(
            "conv",
            kernel_channels=k_ch,
            output_channels=c_out,
            height=kh,
            width=kw_,
            groups=groups,
            W=w.transpose(2, 3, 1, 0),
            b=bias,
            has_bias=bias is not None,
            input_name="x",
            output_name="y",
            **kw,
        )

    return add


def _same_pads(size: int, k: int, s: int, d: int, top_left_heavy: bool) -> tuple[int, int]:
    # Core ML "same": ceil(size / stride) outputs, the odd pixel at the end by default.
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return (total - total // 2, total // 2) if top_left_heavy else (total // 2, total - total // 2)


CASES = [
    # (c_in, c_out, groups, kernel, stride, dilation, size)
    (3, 4, 1, (3, 3), (1, 1), (1, 1), (9, 9)),
    (4, 6, 2, (3, 2), (2, 1), (1, 1), (10, 7)),
    (6, 6, 6, (3, 3), (2, 2), (1, 1), (8, 9)),  # depthwise
    (3, 5, 1, (3, 3), (1, 1), (2, 2), (11, 10)),  # dilated
    (2, 3, 1, (4, 4), (3, 2), (1, 2), (12, 13)),  # even kernel: asymmetric same pads
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["BOTTOM_RIGHT_HEAVY", "TOP_LEFT_HEAVY"])
def test_same_padding(case, mode: str) -> None:
    c_in, c_out, groups, (kh, kw), (sh, sw), (dh, dw), (h, w) = case
    r = rng(sum(case[0:3]))
    weights = r.standard_normal((c_out, c_in // groups, kh, kw)).astype(np.float32)
    bias = r.standard_normal(c_out).astype(np.float32)
    x = r.standard_normal((2, c_in, h, w)).astype(np.float32)
    add = _conv_layer(
        weights,
        bias,
        groups=groups,
        stride_height=sh,
        stride_width=sw,
        border_mode="same",
        dilation_factors=[dh, dw],
        same_padding_asymmetry_mode=mode,
    )
    got = run_one_layer(add, {"x": (c_in, h, w)}, {"x": x})
    heavy = mode == "TOP_LEFT_HEAVY"
    top, bottom = _same_pads(h, kh, sh, dh, heavy)
    left, right = _same_pads(w, kw, sw, dw, heavy)
    padded = F.pad(torch.from_numpy(x), (left, right, top, bottom))
    expected = F.conv2d(
        padded,
        torch.from_numpy(weights),
        torch.from_numpy(bias),
        stride=(sh, sw),
        dilation=(dh, dw),
        groups=groups,
    )
    assert got.shape[2:] == (math.ceil(h / sh), math.ceil(w / sw))
    assert_close(got, expected.numpy())


@pytest.mark.parametrize("case", CASES)
def test_valid_with_explicit_padding(case) -> None:
    c_in, c_out, groups, (kh, kw), (sh, sw), (dh, dw), (h, w) = case
    r = rng(7)
    weights = r.standard_normal((c_out, c_in // groups, kh, kw)).astype(np.float32)
    x = r.standard_normal((3, c_in, h, w)).astype(np.float32)
    pads = dict(padding_top=1, padding_bottom=2, padding_left=0, padding_right=3)
    add = _conv_layer(
        weights,
        None,
        groups=groups,
        stride_height=sh,
        stride_width=sw,
        border_mode="valid",
        dilation_factors=[dh, dw],
        **pads,
    )
    got = run_one_layer(add, {"x": (c_in, h, w)}, {"x": x})
    padded = F.pad(torch.from_numpy(x), (0, 3, 1, 2))
    expected = F.conv2d(
        padded, torch.from_numpy(weights), stride=(sh, sw), dilation=(dh, dw), groups=groups
    )
    assert_close(got, expected.numpy())


@pytest.mark.parametrize(
    ("c_in", "c_out", "groups", "stride", "kernel", "output_shape"),
    [
        (3, 4, 1, 2, 3, None),
        (4, 6, 2, 2, 4, None),
        (2, 3, 1, 3, 3, (17, 17)),  # outputShape one more than the natural 16
        (2, 2, 1, 2, 3, (12, 12)),
    ],
)
def test_deconvolution_valid(c_in, c_out, groups, stride, kernel, output_shape) -> None:
    r = rng(c_in * 10 + c_out)
    h = w = 5
    weights = r.standard_normal((c_in, c_out // groups, kernel, kernel)).astype(np.float32)
    bias = r.standard_normal(c_out).astype(np.float32)
    x = r.standard_normal((2, c_in, h, w)).astype(np.float32)

    def add(b):
        b.add_convolution(
            "deconv",
            kernel_channels=c_in,
            output_channels=c_out,
            height=kernel,
            width=kernel,
            stride_height=stride,
            stride_width=stride,
            border_mode="valid",
            groups=groups,
            W=weights.transpose(2, 3, 0, 1),
            b=bias,
            has_bias=True,
            is_deconv=True,
            output_shape=output_shape,
            input_name="x",
            output_name="y",
        )

    got = run_one_layer(add, {"x": (c_in, h, w)}, {"x": x})
    natural = (h - 1) * stride + kernel
    extra = 0 if output_shape is None else output_shape[0] - natural
    expected = F.conv_transpose2d(
        torch.from_numpy(x),
        torch.from_numpy(weights),
        torch.from_numpy(bias),
        stride=stride,
        groups=groups,
        output_padding=max(extra, 0),
    ).numpy()
    if extra < 0:
        expected = expected[:, :, : output_shape[0], : output_shape[1]]
    assert_close(got, expected)


class TorchConvs(torch.nn.Module):
    """Conv2d/ConvTranspose2d settings PyTorch models use, as coremltools converts them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.c = torch.nn.Conv2d(8, 6, (1, 3), padding=(0, 1), groups=2, bias=False)
        self.d = torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
        self.e = torch.nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.e(self.d(self.c(self.b(self.a(x)))))


def test_torch_convolutions_as_coremltools_converts_them() -> None:
    module = TorchConvs().eval()
    spec = convert_module(module, (1, 3, 15, 15))
    x = rng(3).standard_normal((2, 3, 15, 15)).astype(np.float32)
    got = run_spec(spec, {"x": x})[spec.description.output[0].name]
    with torch.no_grad():
        assert_close(got, module(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (4, 2), (5, 3)])
@pytest.mark.parametrize("mode", ["BOTTOM_RIGHT_HEAVY", "TOP_LEFT_HEAVY"])
def test_deconvolution_same(kernel: int, stride: int, mode: str) -> None:
    # "Same" deconvolution gives H * stride outputs: the adjoint of a same-padded
    # convolution, cropping the full transposed output as that convolution pads it.
    r = rng(kernel)
    weights = r.standard_normal((2, 3, kernel, kernel)).astype(np.float32)
    x = r.standard_normal((2, 2, 5, 5)).astype(np.float32)

    def add(b):
        b.add_convolution(
            "deconv",
            kernel_channels=2,
            output_channels=3,
            height=kernel,
            width=kernel,
            stride_height=stride,
            stride_width=stride,
            border_mode="same",
            groups=1,
            W=weights.transpose(2, 3, 0, 1),
            b=None,
            has_bias=False,
            is_deconv=True,
            input_name="x",
            output_name="y",
            same_padding_asymmetry_mode=mode,
        )

    got = run_one_layer(add, {"x": (2, 5, 5)}, {"x": x})
    full = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(weights), stride=stride)
    crop = full.shape[2] - 5 * stride
    start = crop // 2 if mode == "BOTTOM_RIGHT_HEAVY" else crop - crop // 2
    expected = full[:, :, start : start + 5 * stride, start : start + 5 * stride]
    assert_close(got, expected.numpy())
