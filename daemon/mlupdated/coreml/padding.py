"""Core ML's padding rules for convolution and pooling, as explicit pads.

The engine (which writes ONNX pads) and the trainer (which pads NumPy arrays) must
agree with Core ML and with each other, so both read the rules from here:

* ``valid`` with ``paddingAmounts``: explicit start/end amounts per spatial axis;
* ``same``: ``ceil(size / stride)`` outputs, the odd pixel of padding at the
  bottom/right (``BOTTOM_RIGHT_HEAVY``, the default) or top/left (``TOP_LEFT_HEAVY``);
* ``includeLastPixel`` (pooling): Caffe's ceil-mode output size.
"""

from __future__ import annotations

import math
from typing import Any

# SamePadding.asymmetryMode values.
BOTTOM_RIGHT_HEAVY, TOP_LEFT_HEAVY = 0, 1


def pair(values: Any, default: int) -> tuple[int, int]:
    """A (height, width) pair from a repeated spec field (empty means ``default``)."""
    v = [int(x) for x in values]
    if not v:
        return default, default
    if len(v) != 2:
        raise ValueError(f"expected 2 values (height, width), got {v}")
    return v[0], v[1]


def valid_pads(valid: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` from a ``ValidPadding``'s ``paddingAmounts``."""
    amounts = list(valid.paddingAmounts.borderAmounts)
    if not amounts:
        return (0, 0), (0, 0)
    if len(amounts) != 2:
        raise ValueError("paddingAmounts needs two border amounts (height, width)")
    h, w = amounts
    return (int(h.startEdgeSize), int(h.endEdgeSize)), (int(w.startEdgeSize), int(w.endEdgeSize))


def same_pads(size: int, kernel: int, stride: int, dilation: int, mode: int) -> tuple[int, int]:
    """(start, end) pads of the "same" rule along one axis."""
    out = math.ceil(size / stride)
    span = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + span - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if mode == TOP_LEFT_HEAVY else (small, big)


def include_last_pixel_pads(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int]:
    """(start, end) pads giving the ``includeLastPixel`` output size along one axis, for
    a pooling that itself never rounds up (ONNX and NumPy floor mode)."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    # A last window that would start inside the end padding only is dropped.
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return pad, max((out - 1) * stride + kernel - size - pad, 0)
