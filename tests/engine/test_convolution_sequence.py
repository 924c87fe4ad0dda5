"""A convolution over a blob with a real sequence axis (``[N, Seq, C, H, W]``): Core ML
convolves every step of every example alike, so the reference is ``torch``'s conv2d
(or conv_transpose2d) on each step. The sequence comes from an input fed as one, or
from a recurrent-free permute that moves H into Seq."""

from __future__ import annotations

import math

import mlupdated
import numpy as np
import pytest
import torch
from mlupdated.coreml.spec import save_spec
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session
from torch.nn import functional as F

from .helpers import assert_close, build_spec, rng

N, SEQ, C_IN, C_OUT, H, W = 2, 3, 3, 4, 7, 6


def _add_conv(weights, bias, *, source="x", deconv=False, **kw):
    kw = {"stride_height": 1, "stride_width": 1, "border_mode": "valid", **kw}

    def add(b):
        c_a, c_b, kh, kw_ = weights.shape
        b.add_convolution(
            "conv",
            kernel_channels=c_a if deconv else c_b,
            output_channels=c_b if deconv else c_a,
            height=kh,
            width=kw_,
            groups=1,
            W=weights.transpose(2, 3, 0, 1) if deconv else weights.transpose(2, 3, 1, 0),
            b=bias,
            has_bias=True,
            is_deconv=deconv,
            input_name=source,
            output_name="y",
            **kw,
        )

    return add


def _per_step(fn, x5: np.ndarray) -> np.ndarray:
    """``fn`` on each step of ``[N, Seq, C, H, W]``, stacked back."""
    n, seq = x5.shape[:2]
    out = fn(torch.from_numpy(x5.reshape(n * seq, *x5.shape[2:]))).numpy()
    return out.reshape(n, seq, *out.shape[1:])


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _weights(seed: int, deconv: bool = False):
    r = rng(seed)
    shape = (C_IN, C_OUT, 3, 3) if deconv else (C_OUT, C_IN, 3, 3)
    return r.standard_normal(shape).astype(np.float32), r.standard_normal(C_OUT).astype(np.float32)


def _run(add, x5: np.ndarray) -> np.ndarray:
    spec = build_spec({"x": (C_IN, H, W)}, ["y"], add)
    model = compile_network(spec, outputs=["y"], sequences={"x": x5.shape[1]})
    return Session(model).run({"x": x5})["y"]


def _x(seed: int) -> np.ndarray:
    return rng(seed).standard_normal((N, SEQ, C_IN, H, W)).astype(np.float32)


@pytest.mark.parametrize("stride", [1, 2])
def test_valid_convolution_over_each_step(stride: int) -> None:
    w, b = _weights(1)
    x = _x(2)
    got = _run(_add_conv(w, b, stride_height=stride, stride_width=stride), x)
    want = _per_step(
        lambda t: F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b), stride=stride), x
    )
    assert got.shape == want.shape and got.shape[:2] == (N, SEQ)
    assert_close(got, want)


def test_same_convolution_over_each_step() -> None:
    w, b = _weights(3)
    x = _x(4)
    got = _run(_add_conv(w, b, stride_height=2, stride_width=2, border_mode="same"), x)
    top, bottom = _same_pads(H, 3, 2)
    left, right = _same_pads(W, 3, 2)

    def conv(t):
        padded = F.pad(t, (left, right, top, bottom))
        return F.conv2d(padded, torch.from_numpy(w), torch.from_numpy(b), stride=2)

    assert_close(got, _per_step(conv, x))


def test_deconvolution_over_each_step() -> None:
    w, b = _weights(5, deconv=True)
    x = _x(6)
    got = _run(_add_conv(w, b, deconv=True, stride_height=2, stride_width=2), x)
    want = _per_step(
        lambda t: F.conv_transpose2d(t, torch.from_numpy(w), torch.from_numpy(b), stride=2), x
    )
    assert_close(got, want)


def test_a_permute_that_makes_a_sequence_feeds_the_convolution() -> None:
    """permute (2, 1, 0, 3) sends H to Seq and Seq (1) to H: per example each of the H
    rows becomes a step of shape [C, 1, W], convolved with a 1 x 3 kernel."""
    r = rng(7)
    w = r.standard_normal((C_OUT, C_IN, 1, 3)).astype(np.float32)
    b = r.standard_normal(C_OUT).astype(np.float32)
    x = r.standard_normal((N, C_IN, H, W)).astype(np.float32)

    def add(builder):
        builder.add_permute("p", (2, 1, 0, 3), "x", "seq")
        _add_conv(w, b, source="seq")(builder)

    spec = build_spec({"x": (C_IN, H, W)}, ["y"], add)
    got = Session(compile_network(spec, outputs=["y"])).run({"x": x})["y"]
    steps = x.transpose(0, 2, 1, 3)[:, :, :, None, :]  # [N, H, C, 1, W]
    want = _per_step(lambda t: F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b)), steps)
    assert_close(got, want)


def test_predict_runs_the_convolution_over_a_sequence(tmp_path) -> None:
    w, b = _weights(8)
    spec = build_spec({"x": (C_IN, H, W)}, ["y"], _add_conv(w, b))
    path = tmp_path / "conv.mlmodel"
    save_spec(spec, path)
    x = _x(9)[0]  # one example, SEQ steps
    got = mlupdated.predict(path, {"x": x[:, None]})["y"]
    want = _per_step(lambda t: F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b)), x[None])[0]
    assert got.shape == (SEQ, 1, C_OUT, H - 2, W - 2)  # Core ML's [Seq, 1, C, H, W]
    assert_close(got[:, 0], want)
