"""Every trainable op and loss: forward and gradients against torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlupdated.train import ops, ops_spatial
from mlupdated.train.autodiff import Value
from mlupdated.train.losses import cross_entropy, mean_squared_error

RTOL = 1e-5


def close(ours: np.ndarray, ref: torch.Tensor) -> None:
    ref_np = ref.detach().double().numpy()
    scale = max(float(np.abs(ref_np).max()), 1e-3)
    err = float(np.abs(ours.astype(np.float64) - ref_np).max())
    assert err <= RTOL * scale, f"max error {err} vs scale {scale}"


def leaves(rng: np.random.Generator, *shapes: tuple[int, ...]):
    """Our leaves and torch's double-precision twins holding the same float32 values."""
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [Value(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    return ours, theirs


def check(
    out: Value,
    ref: torch.Tensor,
    ours: list[Value],
    theirs: list[torch.Tensor],
    rng: np.random.Generator,
) -> None:
    close(out.data, ref)
    upstream = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(upstream)
    ref.backward(torch.tensor(upstream, dtype=torch.float64))
    for mine, their in zip(ours, theirs, strict=True):
        assert mine.grad is not None
        close(mine.grad, their.grad)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "stride,pads,dilation,groups",
    [
        ((1, 1), (0, 0, 0, 0), (1, 1), 1),
        ((2, 1), (1, 1, 2, 2), (1, 1), 2),
        ((2, 2), (0, 1, 0, 1), (1, 1), 1),
        ((1, 1), (1, 1, 1, 1), (2, 2), 3),
    ],
)
def test_convolution(seed, stride, pads, dilation, groups):
    rng = np.random.default_rng(seed)
    n, c_in = int(rng.integers(1, 4)), 2 * groups
    h, w = (int(v) for v in rng.integers(6, 11, 2))
    c_out = 3 * groups if seed % 2 else groups
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    (x, wt, b), (tx, tw, tb) = leaves(
        rng, (n, c_in, h, w), (c_out, c_in // groups, kh, kw), (c_out,)
    )
    out = ops_spatial.conv2d(x, wt, b, stride=stride, pads=pads, dilation=dilation, groups=groups)
    top, bottom, left, right = pads
    ref = F.conv2d(
        F.pad(tx, (left, right, top, bottom)),
        tw,
        tb,
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    check(out, ref, [x, wt, b], [tx, tw, tb], rng)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("four_d", [True, False])
def test_inner_product(seed, four_d):
    rng = np.random.default_rng(seed)
    n, c_in, c_out = int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.integers(1, 7))
    shape = (n, c_in, 1, 1) if four_d else (n, c_in)
    (x, wt, b), (tx, tw, tb) = leaves(rng, shape, (c_out, c_in), (c_out,))
    out = ops.inner_product(x, wt, b)
    ref = F.linear(tx.reshape(n, c_in), tw, tb)
    ref = ref.reshape(n, c_out, 1, 1) if four_d else ref
    check(out, ref, [x, wt, b], [tx, tw, tb], rng)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 0, 1, 0), (1, 1, 1, 1)])
def test_max_pool(seed, pads):
    rng = np.random.default_rng(seed)
    (x,), (tx,) = leaves(rng, (2, 3, 7, 6))
    kernel, stride = (3, 2), (2, int(rng.integers(1, 3)))
    out = ops_spatial.max_pool2d(x, kernel=kernel, stride=stride, pads=pads)
    top, bottom, left, right = pads
    ref = F.max_pool2d(F.pad(tx, (left, right, top, bottom), value=-float("inf")), kernel, stride)
    check(out, ref, [x], [tx], rng)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("exclude", [False, True])
def test_average_pool(seed, exclude):
    rng = np.random.default_rng(seed)
    (x,), (tx,) = leaves(rng, (2, 2, 6, 7))
    kernel, stride, pads = (3, 3), (2, 2), (1, 1, 1, 1)
    out = ops_spatial.avg_pool2d(
        x, kernel=kernel, stride=stride, pads=pads, exclude_padding=exclude
    )
    ref = F.avg_pool2d(tx, kernel, stride, padding=1, count_include_pad=not exclude)
    check(out, ref, [x], [tx], rng)


@pytest.mark.parametrize("kind", ["max", "average"])
def test_global_pool(kind):
    rng = np.random.default_rng(7)
    (x,), (tx,) = leaves(rng, (3, 4, 5, 6))
    out = ops_spatial.global_pool(x, kind=kind)
    ref = tx.amax(dim=(2, 3), keepdim=True) if kind == "max" else tx.mean(dim=(2, 3), keepdim=True)
    check(out, ref, [x], [tx], rng)


@pytest.mark.parametrize("channel_last", [False, True])
def test_flatten(channel_last):
    rng = np.random.default_rng(3)
    (x,), (tx,) = leaves(rng, (2, 3, 4, 5))
    out = ops.flatten(x, channel_last=channel_last)
    src = tx.permute(0, 2, 3, 1) if channel_last else tx
    check(out, src.reshape(2, 60, 1, 1), [x], [tx], rng)


def test_batchnorm_frozen():
    rng = np.random.default_rng(4)
    (x,), (tx,) = leaves(rng, (3, 4, 5, 5))
    gamma, beta, mean = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, 4).astype(np.float32)
    out = ops.batchnorm_frozen(x, gamma=gamma, beta=beta, mean=mean, variance=var, epsilon=1e-5)
    t = [torch.tensor(a, dtype=torch.float64) for a in (mean, var, gamma, beta)]
    ref = F.batch_norm(tx, *t, training=False, eps=1e-5)
    check(out, ref, [x], [tx], rng)


@pytest.mark.parametrize(
    "kind,fn", [("ReLU", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)]
)
def test_activation(kind, fn):
    rng = np.random.default_rng(5)
    (x,), (tx,) = leaves(rng, (4, 3, 2, 2))
    check(ops.activation(x, kind), fn(tx), [x], [tx], rng)


def test_softmax():
    rng = np.random.default_rng(6)
    (x,), (tx,) = leaves(rng, (4, 5, 1, 1))
    check(ops.softmax(x, axis=1), torch.softmax(tx, dim=1), [x], [tx], rng)


@pytest.mark.parametrize("seed", range(3))
def test_cross_entropy_through_softmax(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 7)), int(rng.integers(2, 6))
    (x,), (tx,) = leaves(rng, (n, c, 1, 1))
    x.data *= 5
    tx.data *= 5
    target = rng.integers(0, c, n)
    loss = cross_entropy(ops.softmax(x, axis=1), target)
    ref = F.nll_loss(torch.log(torch.softmax(tx.reshape(n, c), dim=1)), torch.tensor(target))
    close(loss.data, ref)
    loss.backward()
    ref.backward()
    close(x.grad, tx.grad)


def test_cross_entropy_on_probabilities():
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 1, (4, 3)).astype(np.float32)
    p /= p.sum(axis=1, keepdims=True)
    (x,), (tx,) = (
        [Value(p, requires_grad=True)],
        [torch.tensor(p, dtype=torch.float64, requires_grad=True)],
    )
    target = np.array([0, 2, 1, 2])
    loss = cross_entropy(x, target)
    ref = F.nll_loss(torch.log(tx), torch.tensor(target))
    close(loss.data, ref)
    loss.backward()
    ref.backward()
    close(x.grad, tx.grad)


def test_cross_entropy_is_finite_when_a_probability_underflows():
    x = Value(np.array([[[[200.0]], [[-200.0]]]], dtype=np.float32), requires_grad=True)
    loss = cross_entropy(ops.softmax(x, axis=1), np.array([1]))
    assert np.isfinite(loss.data) and loss.data == pytest.approx(400.0)
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_mean_squared_error():
    rng = np.random.default_rng(8)
    (x,), (tx,) = leaves(rng, (5, 3, 1, 1))
    target = rng.standard_normal((5, 3)).astype(np.float32)
    loss = mean_squared_error(x, target)
    ref = F.mse_loss(tx, torch.tensor(target, dtype=torch.float64).reshape(5, 3, 1, 1))
    close(loss.data, ref)
    loss.backward()
    ref.backward()
    close(x.grad, tx.grad)


def test_gradients_add_when_a_value_is_used_twice():
    rng = np.random.default_rng(9)
    (x, wt), (tx, tw) = leaves(rng, (2, 3), (3, 3))
    a = ops.inner_product(x, wt, None)
    b = ops.inner_product(a, wt, None)
    ref = F.linear(F.linear(tx, tw), tw)
    check(b, ref, [x, wt], [tx, tw], rng)
