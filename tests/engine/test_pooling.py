"""pooling against PyTorch/NumPy: MAX, AVERAGE (padding counted or excluded), L2;
valid with explicit pads, Core ML's "same" in both asymmetry modes, includeLastPixel
with Core ML's output-size rule, global pooling, and torch pools as converted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from .helpers import assert_close, rng, run_one_layer, run_spec
from .torch_convert import convert_module

C = 3


def _reference(x: np.ndarray, kind: str, k, s, pads, *, exclude: bool) -> np.ndarray:
    """Pooling over explicitly padded input; pads = (top, bottom, left, right)."""
    t = torch.from_numpy(x)
    top, bottom, left, right = pads
    if kind == "MAX":
        padded = F.pad(t, (left, right, top, bottom), value=-math.inf)
        return F.max_pool2d(padded, k, s).numpy()
    if kind == "L2":
        padded = F.pad(t * t, (left, right, top, bottom))
        return torch.sqrt(F.avg_pool2d(padded, k, s) * (k[0] * k[1])).numpy()
    padded = F.pad(t, (left, right, top, bottom))
    mean = F.avg_pool2d(padded, k, s)
    if not exclude:
        return mean.numpy()
    ones = F.pad(torch.ones_like(t), (left, right, top, bottom))
    return (mean / F.avg_pool2d(ones, k, s)).numpy()


def _pool(kind: str, k, s, padding_type: str, *, exclude: bool = True, **kw):
    def add(b):
        b.add_pooling(
            "pool",
            k[0],
            k[1],
            s[0],
            s[1],
            kind,
            padding_type,
            "x",
            "y",
            exclude_pad_area=exclude,
            **kw,
        )

    return add


def _x(h: int, w: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal((2, C, h, w)).astype(np.float32)


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE", "L2"])
@pytest.mark.parametrize("exclude", [True, False])
def test_valid_with_explicit_pads(kind: str, exclude: bool) -> None:
    x = _x(9, 8)
    pads = dict(padding_top=1, padding_bottom=0, padding_left=2, padding_right=1)
    got = run_one_layer(
        _pool(kind, (3, 3), (2, 2), "VALID", exclude=exclude, **pads), {"x": (C, 9, 8)}, {"x": x}
    )
    assert_close(got, _reference(x, kind, (3, 3), (2, 2), (1, 0, 2, 1), exclude=exclude))


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE", "L2"])
@pytest.mark.parametrize("mode", ["BOTTOM_RIGHT_HEAVY", "TOP_LEFT_HEAVY"])
@pytest.mark.parametrize(("k", "s", "size"), [((3, 3), (2, 2), (9, 10)), ((2, 4), (1, 3), (7, 11))])
def test_same_padding(kind: str, mode: str, k, s, size) -> None:
    x = _x(*size, seed=1)
    got = run_one_layer(
        _pool(kind, k, s, "SAME", same_padding_asymmetry_mode=mode), {"x": (C, *size)}, {"x": x}
    )
    pads = []
    for n, kk, ss in zip(size, k, s, strict=True):
        total = max((math.ceil(n / ss) - 1) * ss + kk - n, 0)
        small, big = total // 2, total - total // 2
        pads += [big, small] if mode == "TOP_LEFT_HEAVY" else [small, big]
    expected = _reference(x, kind, k, s, (pads[0], pads[1], pads[2], pads[3]), exclude=True)
    assert got.shape[2:] == (math.ceil(size[0] / s[0]), math.ceil(size[1] / s[1]))
    assert_close(got, expected)


def _last_pixel_size(n: int, k: int, s: int, p: int) -> int:
    out = math.ceil((n + 2 * p - k) / s) + 1
    if p > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE"])
@pytest.mark.parametrize(("n", "k", "s", "p"), [(10, 3, 2, 0), (9, 3, 2, 1), (8, 2, 3, 1)])
def test_include_last_pixel(kind: str, n: int, k: int, s: int, p: int) -> None:
    x = _x(n, n, seed=2)
    got = run_one_layer(
        _pool(
            kind,
            (k, k),
            (s, s),
            "INCLUDE_LAST_PIXEL",
            padding_top=p,
            padding_bottom=p,
            padding_left=p,
            padding_right=p,
        ),
        {"x": (C, n, n)},
        {"x": x},
    )
    out = _last_pixel_size(n, k, s, p)
    end = (out - 1) * s + k - n - p
    assert got.shape[2:] == (out, out)
    expected = _reference(x, kind, (k, k), (s, s), (p, end, p, end), exclude=True)
    assert_close(got, expected)


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE", "L2"])
def test_global(kind: str) -> None:
    x = _x(5, 7, seed=3)
    got = run_one_layer(
        lambda b: b.add_pooling("gp", 0, 0, 1, 1, kind, "VALID", "x", "y", is_global=True),
        {"x": (C, 5, 7)},
        {"x": x},
    )
    reduce = {"MAX": np.max, "AVERAGE": np.mean}
    if kind == "L2":
        expected = np.sqrt(np.sum(x * x, axis=(2, 3), keepdims=True))
    else:
        expected = reduce[kind](x, axis=(2, 3), keepdims=True)
    assert_close(got, expected)


class TorchPools(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.max_pool2d(x, 3, 2, ceil_mode=True)
        b = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
        c = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=True)
        d = F.max_pool2d(x, 2, 2, padding=1)
        e = F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)
        return torch.cat([t.flatten(1) for t in (a, b, c, d, e)], 1)


def test_torch_pools_as_coremltools_converts_them() -> None:
    module = TorchPools()
    spec = convert_module(module, (1, C, 11, 11))
    x = _x(11, 11, seed=4)
    got = run_spec(spec, {"x": x})[spec.description.output[0].name]
    with torch.no_grad():
        assert_close(got, module(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("kind", ["MAX", "AVERAGE"])
def test_global_pooling_3d(kind: str) -> None:
    x = rng(5).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_global_pooling3d("gp3", "x", "y", kind),
        {"x": (1, 3, 4, 5, 6)},
        {"x": x},
        nd=True,
    )
    reduce = np.max if kind == "MAX" else np.mean
    assert_close(got, reduce(x, axis=(2, 3, 4), keepdims=True))


class CeilAveragePools(torch.nn.Module):
    """Average pools whose last window passes the padded edge (ceil mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [
            F.avg_pool2d(x, 3, 2, ceil_mode=True),
            F.avg_pool2d(x, 3, 2, ceil_mode=True, count_include_pad=False),
            F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True),
            F.avg_pool2d(x, 2, 3, padding=1, ceil_mode=True),
        ]
        return torch.cat([t.flatten(1) for t in parts], 1)


def test_ceil_mode_average_pools_count_like_pytorch() -> None:
    module = CeilAveragePools()
    spec = convert_module(module, (1, C, 10, 10))
    x = _x(10, 10, seed=6)
    got = run_spec(spec, {"x": x})[spec.description.output[0].name]
    with torch.no_grad():
        assert_close(got, module(torch.from_numpy(x)).numpy())
