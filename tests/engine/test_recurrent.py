"""The recurrent layers (``simpleRecurrent``, ``gru``, ``uniDirectionalLSTM``,
``biDirectionalLSTM``) built by NeuralNetworkBuilder, run over a sequence input, against
``torch.nn.RNN``/``LSTM`` (same gate order, same equations) and, for what torch has no
match for (Core ML's GRU resets the state before ``R_o``; peepholes, coupled gates,
hard-sigmoid and scaled-tanh activations), against NumPy written from the
NeuralNetwork.proto equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session

from .helpers import assert_close, build_spec, rng

N, SEQ, IN, H = 3, 5, 4, 6


def _run(add, n_out: int, x: np.ndarray, states: dict[str, np.ndarray] | None = None):
    states = states or {}
    inputs = {"x": (IN,), **{name: (H,) for name in states}}
    outputs = [f"o{i}" for i in range(n_out)]
    spec = build_spec(inputs, outputs, add)
    model = compile_network(
        spec, outputs=outputs, sequences={"x": x.shape[1]} if x.ndim == 3 else None
    )
    feeds = {"x": x, **states}
    got = Session(model).run({k: v.astype(np.float32) for k, v in feeds.items()})
    return [got[o] for o in outputs]


def _seq(seed: int, steps: int = SEQ) -> np.ndarray:
    return rng(seed).standard_normal((N, steps, IN)).astype(np.float32)


def _out(y: np.ndarray) -> np.ndarray:
    """A per-step torch output [N, Seq, H] in the engine's [N, Seq, H, 1, 1]."""
    return y[..., None, None]


def _vec(v: np.ndarray) -> np.ndarray:
    return v.reshape(N, -1, 1, 1)


# -- simpleRecurrent against torch.nn.RNN ----------------------------------------------------


@pytest.mark.parametrize(("act", "nonlinearity"), [("TANH", "tanh"), ("RELU", "relu")])
@pytest.mark.parametrize("output_all", [False, True])
def test_simple_recurrent(act: str, nonlinearity: str, output_all: bool) -> None:
    torch.manual_seed(0)
    rnn = torch.nn.RNN(IN, H, nonlinearity=nonlinearity, batch_first=True)
    w_x = rnn.weight_ih_l0.detach().numpy()
    w_h = rnn.weight_hh_l0.detach().numpy()
    b = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    x, h0 = _seq(1), rng(2).standard_normal((N, H)).astype(np.float32)
    y, h = _run(
        lambda bl: bl.add_simple_rnn(
            "r", w_h, w_x, b, H, IN, act, ["x", "h0"], ["o0", "o1"], output_all=output_all
        ),
        2,
        x,
        {"h0": h0},
    )
    ty, th = rnn(torch.from_numpy(x), torch.from_numpy(h0)[None])
    ty = ty.detach().numpy()
    assert_close(y, _out(ty) if output_all else _vec(ty[:, -1]))
    assert_close(h, _vec(th.detach().numpy()[0]))


# -- uniDirectionalLSTM / biDirectionalLSTM against torch.nn.LSTM ----------------------------


def _lstm_weights(lstm: torch.nn.LSTM, suffix: str = "") -> tuple[list, list, list]:
    """torch's (i, f, g, o) blocks as the builder's [i, f, o, z] lists."""

    def blocks(t):
        i, f, g, o = np.split(t.detach().numpy(), 4)
        return [i, f, o, g]

    w_x = blocks(getattr(lstm, f"weight_ih_l0{suffix}"))
    w_h = blocks(getattr(lstm, f"weight_hh_l0{suffix}"))
    b = blocks(getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}"))
    return w_h, w_x, b


@pytest.mark.parametrize("output_all", [False, True])
@pytest.mark.parametrize("with_states", [False, True])
def test_uni_lstm(output_all: bool, with_states: bool) -> None:
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(IN, H, batch_first=True)
    w_h, w_x, b = _lstm_weights(lstm)
    x = _seq(3)
    h0 = (
        rng(4).standard_normal((N, H)).astype(np.float32)
        if with_states
        else np.zeros((N, H), np.float32)
    )
    c0 = (
        rng(5).standard_normal((N, H)).astype(np.float32)
        if with_states
        else np.zeros((N, H), np.float32)
    )
    names = ["x", "h0", "c0"] if with_states else ["x"]
    y, h, c = _run(
        lambda bl: bl.add_unilstm(
            "l", w_h, w_x, b, H, IN, names, ["o0", "o1", "o2"], output_all=output_all
        ),
        3,
        x,
        {"h0": h0, "c0": c0} if with_states else None,
    )
    ty, (th, tc) = lstm(
        torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
    )
    ty = ty.detach().numpy()
    assert_close(y, _out(ty) if output_all else _vec(ty[:, -1]))
    assert_close(h, _vec(th.detach().numpy()[0]))
    assert_close(c, _vec(tc.detach().numpy()[0]))


def test_reversed_uni_lstm_is_torch_over_the_flipped_sequence() -> None:
    """As coremltools tests it: reverseInput is a forward pass over the flipped input,
    outputs left in the order they were computed."""
    torch.manual_seed(4)
    lstm = torch.nn.LSTM(IN, H, batch_first=True)
    w_h, w_x, b = _lstm_weights(lstm)
    x = _seq(12)
    y, h, c = _run(
        lambda bl: bl.add_unilstm(
            "l", w_h, w_x, b, H, IN, ["x"], ["o0", "o1", "o2"], output_all=True, reverse_input=True
        ),
        3,
        x,
    )
    ty, (th, tc) = lstm(torch.from_numpy(x).flip(1))
    assert_close(y, _out(ty.detach().numpy()))
    assert_close(h, _vec(th.detach().numpy()[0]))
    assert_close(c, _vec(tc.detach().numpy()[0]))


def test_uni_lstm_over_one_step_of_a_classic_blob() -> None:
    """The activity-classifier layout: a [N, C, 1, 1] blob is a sequence of one."""
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(IN, H, batch_first=True)
    w_h, w_x, b = _lstm_weights(lstm)
    x = rng(6).standard_normal((N, IN)).astype(np.float32)
    (y,) = _run(
        lambda bl: bl.add_unilstm("l", w_h, w_x, b, H, IN, ["x"], ["o0"], output_all=True), 1, x
    )
    ty, _ = lstm(torch.from_numpy(x)[:, None])
    assert_close(y, _vec(ty.detach().numpy()[:, 0]))


@pytest.mark.parametrize("output_all", [False, True])
def test_bi_lstm(output_all: bool) -> None:
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(IN, H, batch_first=True, bidirectional=True)
    w_h, w_x, b = _lstm_weights(lstm)
    w_hb, w_xb, bb = _lstm_weights(lstm, "_reverse")
    x = _seq(7)
    y, hf, cf, hb, cb = _run(
        lambda bl: bl.add_bidirlstm(
            "bl",
            w_h,
            w_x,
            b,
            w_hb,
            w_xb,
            bb,
            H,
            IN,
            ["x"],
            ["o0", "o1", "o2", "o3", "o4"],
            output_all=output_all,
        ),
        5,
        x,
    )
    ty, (th, tc) = lstm(torch.from_numpy(x))
    ty, th, tc = ty.detach().numpy(), th.detach().numpy(), tc.detach().numpy()
    if output_all:
        assert_close(y, _out(ty))
    else:
        assert_close(y, _vec(np.concatenate([th[0], th[1]], axis=1)))
    for got, want in zip((hf, cf, hb, cb), (th[0], tc[0], th[1], tc[1]), strict=True):
        assert_close(got, _vec(want))


# -- NumPy from the proto equations ----------------------------------------------------------

_ACTS = {
    "SIGMOID": lambda v: 1 / (1 + np.exp(-v)),
    "TANH": np.tanh,
    "SIGMOID_HARD": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
    "SCALED_TANH": lambda v: 1.7159 * np.tanh(2.0 / 3.0 * v),
    "LINEAR": lambda v: v,
    "RELU": lambda v: np.maximum(v, 0),
}


def _clip(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -50.0, 50.0)


def _proto_lstm(x, w_h, w_x, b, peep, f, g, hact, *, coupled, cell_clip, reverse):
    (wi, wf, wo, wz), (ri, rf, ro, rz), (bi, bf, bo, bz) = w_x, w_h, b
    pi, pf, po = peep
    h = np.zeros((x.shape[0], H))
    c = np.zeros((x.shape[0], H))
    ys = []
    # Reversed: read from the end, outputs in the order they are computed.
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        xt = x[:, t]
        i = f(_clip(xt @ wi.T + h @ ri.T + pi * c + bi))
        fg = 1 - i if coupled else f(_clip(xt @ wf.T + h @ rf.T + pf * c + bf))
        z = g(_clip(xt @ wz.T + h @ rz.T + bz))
        c = np.clip(c * fg + i * z, -cell_clip, cell_clip)
        o = f(_clip(xt @ wo.T + h @ ro.T + po * c + bo))
        h = hact(c) * o
        ys.append(h)
    return np.stack(ys, axis=1), h, c


@pytest.mark.parametrize(
    ("inner", "cell", "out", "coupled", "reverse"),
    [
        ("SIGMOID_HARD", "SCALED_TANH", "LINEAR", True, False),
        ("SIGMOID", "TANH", "RELU", False, True),
    ],
)
def test_uni_lstm_peepholes_activations_clip(inner, cell, out, coupled, reverse) -> None:
    g = rng(8)
    w_x = [g.standard_normal((H, IN)).astype(np.float32) for _ in range(4)]
    w_h = [0.5 * g.standard_normal((H, H)).astype(np.float32) for _ in range(4)]
    b = [g.standard_normal(H).astype(np.float32) for _ in range(4)]
    peep = [g.standard_normal(H).astype(np.float32) for _ in range(3)]
    x = 3 * _seq(9)
    y, h, c = _run(
        lambda bl: bl.add_unilstm(
            "l",
            w_h,
            w_x,
            b,
            H,
            IN,
            ["x"],
            ["o0", "o1", "o2"],
            inner_activation=inner,
            cell_state_update_activation=cell,
            output_activation=out,
            peep=peep,
            output_all=True,
            coupled_input_forget_gate=coupled,
            cell_clip_threshold=0.75,
            reverse_input=reverse,
        ),
        3,
        x,
    )
    ys, hn, cn = _proto_lstm(
        x.astype(np.float64),
        w_h,
        w_x,
        b,
        peep,
        _ACTS[inner],
        _ACTS[cell],
        _ACTS[out],
        coupled=coupled,
        cell_clip=0.75,
        reverse=reverse,
    )
    assert np.abs(cn).max() == pytest.approx(0.75)  # the cell clip did bind
    assert_close(y, _out(ys.astype(np.float32)))
    assert_close(h, _vec(hn))
    assert_close(c, _vec(cn))


def _proto_gru(x, w_h, w_x, b, f, g, reverse):
    (wz, wr, wo), (rz, rr, ro), (bz, br, bo) = w_x, w_h, b
    h = np.zeros((x.shape[0], H))
    ys = []
    # Reversed: read from the end, outputs in the order they are computed.
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        xt = x[:, t]
        z = f(_clip(xt @ wz.T + h @ rz.T + bz))
        r = f(_clip(xt @ wr.T + h @ rr.T + br))
        o = g(_clip(xt @ wo.T + (h * r) @ ro.T + bo))
        h = (1 - z) * o + z * h
        ys.append(h)
    return np.stack(ys, axis=1), h


@pytest.mark.parametrize(
    ("inner", "act", "reverse"), [("SIGMOID_HARD", "TANH", False), ("SIGMOID", "RELU", True)]
)
def test_gru(inner: str, act: str, reverse: bool) -> None:
    g = rng(10)
    w_x = [g.standard_normal((H, IN)).astype(np.float32) for _ in range(3)]
    w_h = [0.5 * g.standard_normal((H, H)).astype(np.float32) for _ in range(3)]
    b = [g.standard_normal(H).astype(np.float32) for _ in range(3)]
    x = _seq(11)
    y, h = _run(
        lambda bl: bl.add_gru(
            "g",
            w_h,
            w_x,
            b,
            H,
            IN,
            ["x"],
            ["o0", "o1"],
            activation=act,
            inner_activation=inner,
            output_all=True,
            reverse_input=reverse,
        ),
        2,
        x,
    )
    ys, hn = _proto_gru(x.astype(np.float64), w_h, w_x, b, _ACTS[inner], _ACTS[act], reverse)
    assert_close(y, _out(ys.astype(np.float32)))
    assert_close(h, _vec(hn))
