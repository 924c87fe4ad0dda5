"""``convolution3d`` and ``pooling3d`` against torch's conv3d, max_pool3d, avg_pool3d,
with every padding type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .helpers import assert_close, rng, run_one_layer

N, C, D, H, W = 2, 4, 5, 6, 7


def _x(seed: int) -> np.ndarray:
    return rng(seed).standard_normal((N, C, D, H, W)).astype(np.float32)


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("padding", ["valid", "same", "custom"])
@pytest.mark.parametrize(
    ("groups", "stride", "dilation", "bias"),
    [(1, (1, 1, 1), (1, 1, 1), True), (2, (2, 1, 2), (1, 2, 1), False)],
)
def test_convolution3d(padding: str, groups: int, stride, dilation, bias: bool) -> None:
    out_c, kernel = 6, (3, 2, 3)
    w = rng(1).standard_normal((out_c, C // groups, *kernel)).astype(np.float32)
    b = rng(2).standard_normal(out_c).astype(np.float32)
    custom = (1, 0, 2, 1, 0, 1)  # front, back, top, bottom, left, right
    x = _x(3)
    got = run_one_layer(
        lambda bl: bl.add_convolution3d(
            "c",
            C,
            out_c,
            *kernel,
            w,
            b if bias else None,
            bias,
            groups=groups,
            stride_depth=stride[0],
            stride_height=stride[1],
            stride_width=stride[2],
            dilation_depth=dilation[0],
            dilation_height=dilation[1],
            dilation_width=dilation[2],
            padding_mode=padding,
            padding_front=custom[0],
            padding_back=custom[1],
            padding_top=custom[2],
            padding_bottom=custom[3],
            padding_left=custom[4],
            padding_right=custom[5],
            input_name="x",
            output_name="y",
        ),
        {"x": (1, C, D, H, W)},
        {"x": x},
        nd=True,
    )
    if padding == "valid":
        pads = (0,) * 6
    elif padding == "custom":
        pads = custom
    else:
        pads = sum(
            (
                _same_pads(s, k, st, dl)
                for s, k, st, dl in zip((D, H, W), kernel, stride, dilation, strict=True)
            ),
            (),
        )
    # F.pad takes (left, right, top, bottom, front, back).
    padded = F.pad(torch.from_numpy(x), (pads[4], pads[5], pads[2], pads[3], pads[0], pads[1]))
    want = F.conv3d(
        padded,
        torch.from_numpy(w),
        torch.from_numpy(b) if bias else None,
        stride,
        0,
        dilation,
        groups,
    )
    assert_close(got, want.numpy())


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE"])
@pytest.mark.parametrize(
    ("padding", "exclude"), [("valid", False), ("custom", False), ("custom", True)]
)
def test_pooling3d(kind: str, padding: str, exclude: bool) -> None:
    x = _x(4)
    kernel, stride = (2, 3, 2), (1, 2, 2)
    got = run_one_layer(
        lambda bl: bl.add_pooling3d(
            "p",
            "x",
            "y",
            kind,
            *kernel,
            *stride,
            padding_mode=padding,
            custom_padding_front=1,
            custom_padding_back=1,
            custom_padding_top=1,
            custom_padding_bottom=1,
            custom_padding_left=1,
            custom_padding_right=1,
            average_pooling_count_excludes_padding=exclude,
        ),
        {"x": (1, C, D, H, W)},
        {"x": x},
        nd=True,
    )
    t = torch.from_numpy(x)
    pad = 1 if padding == "custom" else 0
    if kind == "MAX":
        want = F.max_pool3d(t, kernel, stride, pad)
    else:
        want = F.avg_pool3d(t, kernel, stride, pad, count_include_pad=not exclude)
    assert_close(got, want.numpy())


def test_pooling3d_same() -> None:
    x = _x(5)
    kernel, stride = (3, 3, 2), (2, 2, 2)
    got = run_one_layer(
        lambda bl: bl.add_pooling3d(
            "p",
            "x",
            "y",
            "AVERAGE",
            *kernel,
            *stride,
            padding_mode="same",
            average_pooling_count_excludes_padding=True,
        ),
        {"x": (1, C, D, H, W)},
        {"x": x},
        nd=True,
    )
    pads = [_same_pads(s, k, st) for s, k, st in zip((D, H, W), kernel, stride, strict=True)]
    # Mean over the window's real elements: sum pooling of zero-padded data / of ones.
    flat = (pads[2][0], pads[2][1], pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    padded = F.pad(torch.from_numpy(x), flat)
    ones = F.pad(torch.ones(1, 1, D, H, W), flat)
    want = F.avg_pool3d(padded, kernel, stride) / F.avg_pool3d(ones, kernel, stride)
    assert_close(got, want.numpy())
