"""Core ML's padding rules as explicit pads, against PyTorch's own output sizes."""

from __future__ import annotations

import pytest
import torch
from mlupdated.coreml.padding import (
    BOTTOM_RIGHT_HEAVY,
    TOP_LEFT_HEAVY,
    include_last_pixel_pads,
    pair,
    same_pads,
    valid_pads,
)
from mlupdated.coreml.proto import NeuralNetwork_pb2


@pytest.mark.parametrize("size", [5, 6, 7, 32])
@pytest.mark.parametrize(
    ("kernel", "stride", "dilation"), [(3, 1, 1), (3, 2, 1), (4, 2, 1), (3, 2, 2)]
)
@pytest.mark.parametrize("mode", [BOTTOM_RIGHT_HEAVY, TOP_LEFT_HEAVY])
def test_same_keeps_ceil_size_over_stride(size, kernel, stride, dilation, mode) -> None:
    start, end = same_pads(size, kernel, stride, dilation, mode)
    assert abs(start - end) <= 1
    assert (start > end) == (mode == TOP_LEFT_HEAVY and start != end)
    span = (kernel - 1) * dilation + 1
    assert (size + start + end - span) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 13])
@pytest.mark.parametrize(("kernel", "stride", "pad"), [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 3, 1)])
def test_include_last_pixel_matches_ceil_mode_pooling(size, kernel, stride, pad) -> None:
    start, end = include_last_pixel_pads(size, kernel, stride, pad)
    assert start == pad
    pool = torch.nn.MaxPool2d(kernel, stride, padding=pad, ceil_mode=True)
    expected = pool(torch.zeros(1, 1, size, size)).shape[-1]
    assert (size + start + end - kernel) // stride + 1 == expected


def test_pair_and_valid_pads_read_spec_fields() -> None:
    params = NeuralNetwork_pb2.ConvolutionLayerParams()
    assert pair(params.stride, 1) == (1, 1)
    params.stride.extend([2, 3])
    assert pair(params.stride, 1) == (2, 3)
    params.dilationFactor.extend([1, 2, 3])
    with pytest.raises(ValueError, match="height, width"):
        pair(params.dilationFactor, 1)
    assert valid_pads(params.valid) == ((0, 0), (0, 0))
    h = params.valid.paddingAmounts.borderAmounts.add(startEdgeSize=1, endEdgeSize=2)
    w = params.valid.paddingAmounts.borderAmounts.add(startEdgeSize=3, endEdgeSize=4)
    assert (h.startEdgeSize, w.endEdgeSize) == (1, 4)
    assert valid_pads(params.valid) == ((1, 2), (3, 4))
