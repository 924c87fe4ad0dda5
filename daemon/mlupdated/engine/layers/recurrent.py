"""Converters for the recurrent layers: ``simpleRecurrent``, ``gru``,
``uniDirectionalLSTM`` and ``biDirectionalLSTM``, each an ONNX ``Scan`` over time.

The step is written out from the NeuralNetwork.proto equations rather than mapped to
ONNX's LSTM/GRU/RNN ops, because Core ML differs from them in ways those ops cannot
express: every gate's pre-activation is clipped to [-50, 50], an LSTM's cell state to
``cellClipThreshold``, and the activations may be linear, ReLU, scaled tanh or hard
sigmoid with Core ML's parameters. Gate order is Core ML's own (LSTM: input, forget,
block input, output; GRU: update, reset, output), read field by field.

Layout: the input is ``[N, C, 1, 1]`` (a sequence of one) or ``[N, Seq, C, 1, 1]``;
state inputs/outputs are ``[N, H, 1, 1]``; the output is ``[N, Seq, H, 1, 1]`` for
``sequenceOutput`` over a sequence, else ``[N, H, 1, 1]``. Missing initial states
are zeros. With ``reverseInput`` the sequence is read from its end and the outputs come
in the order they were computed (coremltools' own tests of reversed recurrent layers
flip the input and compare with a forward pass, unflipped); the backward half of
``biDirectionalLSTM`` instead keeps each output at the position of the input it last
read, as the proto's example spells out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ...coreml.weights import decode_weights
from ...errors import InvalidModelError
from ..registry import FLOAT, ConvertContext, converts
from ._common import check_io, invalid, unsupported


def _counts(layer: Any, *, inputs: tuple[int, int], outputs: tuple[int, ...]) -> None:
    """Check the inputs (a range: optional states) and outputs (the allowed counts)."""
    check_io(layer, inputs=inputs, outputs=len(layer.output))
    if len(layer.output) not in outputs:
        allowed = ", ".join(str(n) for n in outputs)
        raise invalid(layer, f"produces {allowed} output(s), has {len(layer.output)}")


PRE_ACTIVATION_CLIP = 50.0  # clip() in every recurrent equation of the proto
DEFAULT_CELL_CLIP = 50.0  # LSTMParams.cellClipThreshold when 0
# (alpha, beta) of the parametrized recurrent activations, per the proto's list of what
# recurrent layers support: the identity, 1.7159 tanh(2/3 x), min(max(0.2 x + 0.5, 0), 1).
_FIXED = {"linear": (1.0, 0.0), "scaledTanh": (1.7159, 2.0 / 3.0), "sigmoidHard": (0.2, 0.5)}


# -- pieces shared by every recurrent layer ---------------------------------------------


def _matrix(layer: Any, params: Any, rows: int, cols: int) -> np.ndarray:
    values = decode_weights(params, count=rows * cols, layer=layer.name)
    if values.size != rows * cols:
        raise invalid(layer, f"a weight matrix has {values.size} values, expected {rows}x{cols}")
    return values.reshape(rows, cols).astype(np.float32)


def _vector(layer: Any, params: Any, size: int, *, present: bool = True) -> np.ndarray:
    if not present:
        return np.zeros(size, dtype=np.float32)
    return _matrix(layer, params, 1, size).reshape(size)


def _activation(
    layer: Any, ctx: ConvertContext, params: Any, x: str, hint: str
) -> tuple[list[onnx.NodeProto], str]:
    """Nodes applying a recurrent ``ActivationParams`` to ``x``; returns them and the result."""
    kind = params.WhichOneof("NonlinearityType")
    out = ctx.fresh(hint)
    if kind == "sigmoid":
        return [ctx.node("Sigmoid", [x], [out])], out
    if kind == "tanh":
        return [ctx.node("Tanh", [x], [out])], out
    if kind == "ReLU":
        return [ctx.node("Relu", [x], [out])], out
    if kind in _FIXED:
        # Core ML's recurrent layers run these with fixed parameters (coremltools writes
        # the messages empty); parameters that are set are used as written.
        p = getattr(params, kind)
        alpha, beta = (p.alpha, p.beta) if (p.alpha, p.beta) != (0.0, 0.0) else _FIXED[kind]
        if kind == "sigmoidHard":
            return [ctx.node("HardSigmoid", [x], [out], alpha=alpha, beta=beta)], out
        scaled = ctx.fresh(f"{hint}_in")
        if kind == "linear":
            mul = ctx.node("Mul", [x, ctx.const(np.float32(alpha), hint="alpha")], [scaled])
            add = ctx.node("Add", [scaled, ctx.const(np.float32(beta), hint="b")], [out])
            return [mul, add], out
        inner = ctx.fresh(f"{hint}_tanh")
        return [
            ctx.node("Mul", [x, ctx.const(np.float32(beta), hint="beta")], [scaled]),
            ctx.node("Tanh", [scaled], [inner]),
            ctx.node("Mul", [inner, ctx.const(np.float32(alpha), hint="alpha")], [out]),
        ], out
    raise unsupported(layer, f"the recurrent activation {kind!r}")


@dataclass
class _Step:
    """A Scan body under construction: the nodes of one time step."""

    ctx: ConvertContext
    layer: Any
    nodes: list[onnx.NodeProto]

    def clip(self, x: str, bound: float, hint: str) -> str:
        out = self.ctx.fresh(hint)
        lo = self.ctx.const(np.float32(-bound), hint="lo")
        hi = self.ctx.const(np.float32(bound), hint="hi")
        self.nodes.append(self.ctx.node("Clip", [x, lo, hi], [out]))
        return out

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.ctx.fresh(hint)
        self.nodes.append(self.ctx.node(op_type, inputs, [out], **attrs))
        return out

    def gate(self, pre: str, params: Any, hint: str) -> str:
        """``act(clip(pre))``."""
        nodes, out = _activation(
            self.layer, self.ctx, params, self.clip(pre, PRE_ACTIVATION_CLIP, f"{hint}_pre"), hint
        )
        self.nodes.extend(nodes)
        return out


def _sequence_of(
    layer: Any, ctx: ConvertContext, x: str, size: int, nodes: list
) -> tuple[str, bool]:
    """The layer input as ``[Seq, N, size]``; also whether it carried a real sequence."""
    rank = ctx.rank(x)
    if rank not in (4, 5):
        raise invalid(layer, f"input must be [N, C, 1, 1] or [N, Seq, C, 1, 1], got rank {rank}")
    flat = ctx.fresh("steps")
    if rank == 4:
        vec = ctx.fresh("vector")
        nodes.append(ctx.node("Flatten", [x], [vec], axis=1))
        nodes.append(ctx.node("Unsqueeze", [vec, ctx.int64s([0], hint="axes")], [flat]))
    else:
        seq = ctx.fresh("sequence")
        nodes.append(ctx.node("Reshape", [x, ctx.int64s([0, 0, -1], hint="shape")], [seq]))
        nodes.append(ctx.node("Transpose", [seq], [flat], perm=[1, 0, 2]))
    try:
        width = ctx.static_shape(x)[rank - 3 :]
    except InvalidModelError:  # not known now: onnxruntime checks it when it runs
        width = None
    if width is not None and None not in width and int(np.prod(width)) != size:
        raise invalid(layer, f"input has {int(np.prod(width))} values per step, expected {size}")
    return flat, rank == 5


def _initial_state(
    ctx: ConvertContext, layer: Any, index: int, steps: str, size: int, nodes: list
) -> str:
    """Input ``index`` (``[N, size, 1, 1]``) as ``[N, size]``, or zeros when absent."""
    if len(layer.input) > index and layer.input[index]:
        state = ctx.fresh("state")
        nodes.append(ctx.node("Flatten", [layer.input[index]], [state], axis=1))
        return state
    shape, batch, dims, zeros = (ctx.fresh(h) for h in ("shape", "batch", "dims", "zeros"))
    nodes += [
        ctx.node("Shape", [steps], [shape]),
        ctx.node("Gather", [shape, ctx.int64s([1], hint="index")], [batch], axis=0),
        ctx.node("Concat", [batch, ctx.int64s([size], hint="size")], [dims], axis=0),
        ctx.node(
            "ConstantOfShape",
            [dims],
            [zeros],
            value=helper.make_tensor("zero", FLOAT, [1], [0.0]),
        ),
    ]
    return zeros


def _projected(
    ctx: ConvertContext, steps: str, weights: np.ndarray, bias: np.ndarray, nodes: list
) -> str:
    """``steps @ weights.T + bias`` for every step at once: ``[Seq, N, rows]``."""
    out, mm = ctx.fresh("projected"), ctx.fresh("matmul")
    nodes.append(ctx.node("MatMul", [steps, ctx.const(weights.T.copy(), hint="W")], [mm]))
    nodes.append(ctx.node("Add", [mm, ctx.const(bias, hint="b")], [out]))
    return out


def _scan(
    ctx: ConvertContext,
    states: list[str],
    projected: str,
    body_nodes: list[onnx.NodeProto],
    body_in: tuple[list[str], str],
    body_out: tuple[list[str], str],
    *,
    reverse: bool,
    nodes: list,
    aligned: bool = False,
) -> tuple[list[str], str]:
    """Run the step over ``projected`` (``[Seq, N, k]``): final states and ``[Seq, N, H]``."""
    state_ins, x_in = body_in
    state_outs, y_out = body_out

    def info(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, FLOAT, [None, None])

    body = helper.make_graph(
        body_nodes,
        ctx.fresh("step"),
        [info(n) for n in [*state_ins, x_in]],
        [info(n) for n in [*state_outs, y_out]],
    )
    finals = [ctx.fresh("final") for _ in states]
    ys = ctx.fresh("outputs")
    nodes.append(
        ctx.node(
            "Scan",
            [*states, projected],
            [*finals, ys],
            body=body,
            num_scan_inputs=1,
            scan_input_directions=[1 if reverse else 0],
            scan_output_directions=[1 if reverse and aligned else 0],
        )
    )
    return finals, ys


def _emit_state(ctx: ConvertContext, state: str, target: str, nodes: list) -> None:
    """A ``[N, H]`` state as the ``[N, H, 1, 1]`` blob ``target``."""
    nodes.append(ctx.node("Unsqueeze", [state, ctx.int64s([2, 3], hint="axes")], [target]))
    ctx.set_rank(target, 4)


def _emit_output(
    ctx: ConvertContext, ys: str, final: str, target: str, *, sequence: bool, had_seq: bool, nodes
) -> None:
    """The layer's main output from the per-step outputs ``[Seq, N, H]`` (or the final one)."""
    if not (sequence and had_seq):
        # Without sequenceOutput, or over a sequence of one, it is [1, B, H, 1, 1] in Core ML.
        _emit_state(ctx, final if not sequence else _last_or_only(ctx, ys, nodes), target, nodes)
        return
    batch_first = ctx.fresh("batch_first")
    nodes.append(ctx.node("Transpose", [ys], [batch_first], perm=[1, 0, 2]))
    nodes.append(ctx.node("Unsqueeze", [batch_first, ctx.int64s([3, 4], hint="axes")], [target]))
    ctx.set_rank(target, 5)


def _last_or_only(ctx: ConvertContext, ys: str, nodes: list) -> str:
    """The only step of a one-step ``[1, N, H]`` output, as ``[N, H]``."""
    out = ctx.fresh("only_step")
    nodes.append(ctx.node("Squeeze", [ys, ctx.int64s([0], hint="axes")], [out]))
    return out


# -- simpleRecurrent --------------------------------------------------------------------


@converts("simpleRecurrent")
def convert_simple_recurrent(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``y_t = f(clip(W x_t + R y_{t-1} + b))``; inputs ``[x, h0?]``, outputs ``[y, h?]``."""
    _counts(layer, inputs=(1, 2), outputs=(1, 2))
    p = layer.simpleRecurrent
    size_in, size = int(p.inputVectorSize), int(p.outputVectorSize)
    nodes: list[onnx.NodeProto] = []
    steps, had_seq = _sequence_of(layer, ctx, layer.input[0], size_in, nodes)
    w = _matrix(layer, p.weightMatrix, size, size_in)
    r = _matrix(layer, p.recursionMatrix, size, size)
    b = _vector(layer, p.biasVector, size, present=p.hasBiasVector)
    projected = _projected(ctx, steps, w, b, nodes)
    h0 = _initial_state(ctx, layer, 1, steps, size, nodes)

    h_prev, x_t = ctx.fresh("h_prev"), ctx.fresh("x_t")
    step = _Step(ctx, layer, [])
    rec = step.op("MatMul", [h_prev, ctx.const(r.T.copy(), hint="R")], "rec")
    y = step.gate(step.op("Add", [x_t, rec], "pre"), p.activation, "y")
    return _run_single_state(
        ctx, layer, step, h0, projected, (h_prev, x_t, y), had_seq=had_seq, nodes=nodes
    )


# -- gru ----------------------------------------------------------------------------------


@converts("gru")
def convert_gru(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Core ML's GRU (reset applied to the state before ``R_o``); inputs ``[x, h0?]``,
    outputs ``[y, h?]``."""
    _counts(layer, inputs=(1, 2), outputs=(1, 2))
    p = layer.gru
    size_in, size = int(p.inputVectorSize), int(p.outputVectorSize)
    if len(p.activations) != 2:
        raise invalid(layer, f"needs 2 activations [f, g], has {len(p.activations)}")
    f_act, g_act = p.activations
    nodes: list[onnx.NodeProto] = []
    steps, had_seq = _sequence_of(layer, ctx, layer.input[0], size_in, nodes)
    w = np.concatenate(
        [
            _matrix(layer, m, size, size_in)
            for m in (p.updateGateWeightMatrix, p.resetGateWeightMatrix, p.outputGateWeightMatrix)
        ]
    )
    b = np.concatenate(
        [
            _vector(layer, v, size, present=p.hasBiasVectors)
            for v in (p.updateGateBiasVector, p.resetGateBiasVector, p.outputGateBiasVector)
        ]
    )
    r_zr = np.concatenate(
        [
            _matrix(layer, m, size, size)
            for m in (p.updateGateRecursionMatrix, p.resetGateRecursionMatrix)
        ]
    )
    r_o = _matrix(layer, p.outputGateRecursionMatrix, size, size)
    projected = _projected(ctx, steps, w, b, nodes)
    h0 = _initial_state(ctx, layer, 1, steps, size, nodes)

    h_prev, x_t = ctx.fresh("h_prev"), ctx.fresh("x_t")
    step = _Step(ctx, layer, [])
    sizes = ctx.int64s([size, size, size], hint="split")
    xz, xr, xo = (ctx.fresh(n) for n in ("x_z", "x_r", "x_o"))
    step.nodes.append(ctx.node("Split", [x_t, sizes], [xz, xr, xo], axis=1))
    rec = step.op("MatMul", [h_prev, ctx.const(r_zr.T.copy(), hint="R_zr")], "rec")
    rz, rr = ctx.fresh("r_z"), ctx.fresh("r_r")
    step.nodes.append(
        ctx.node("Split", [rec, ctx.int64s([size, size], hint="split")], [rz, rr], axis=1)
    )
    z = step.gate(step.op("Add", [xz, rz], "z_in"), f_act, "z")
    r = step.gate(step.op("Add", [xr, rr], "r_in"), f_act, "r")
    c = step.op("Mul", [h_prev, r], "c")
    ro = step.op("MatMul", [c, ctx.const(r_o.T.copy(), hint="R_o")], "r_o")
    o = step.gate(step.op("Add", [xo, ro], "o_in"), g_act, "o")
    # y = (1 - z) * o + z * h_prev = o + z * (h_prev - o)
    diff = step.op("Sub", [h_prev, o], "diff")
    y = step.op("Add", [o, step.op("Mul", [z, diff], "zd")], "y")
    return _run_single_state(
        ctx, layer, step, h0, projected, (h_prev, x_t, y), had_seq=had_seq, nodes=nodes
    )


# -- LSTM --------------------------------------------------------------------------------


def _lstm_direction(
    layer: Any,
    ctx: ConvertContext,
    steps: str,
    activations: Any,
    params: Any,
    weights: Any,
    sizes: tuple[int, int],
    states: tuple[int, int],
    *,
    reverse: bool,
    nodes: list,
    aligned: bool = False,
) -> tuple[str, str, str]:
    """One LSTM pass: its final ``h`` and ``c`` (``[N, H]``) and outputs ``[Seq, N, H]``."""
    size_in, size = sizes
    if len(activations) != 3:
        raise invalid(layer, f"needs 3 activations [f, g, h], has {len(activations)}")
    f_act, g_act, h_act = activations
    gates = ("inputGate", "forgetGate", "blockInput", "outputGate")
    w = np.concatenate(
        [_matrix(layer, getattr(weights, f"{g}WeightMatrix"), size, size_in) for g in gates]
    )
    r = np.concatenate(
        [_matrix(layer, getattr(weights, f"{g}RecursionMatrix"), size, size) for g in gates]
    )
    b = np.concatenate(
        [
            _vector(layer, getattr(weights, f"{g}BiasVector"), size, present=params.hasBiasVectors)
            for g in gates
        ]
    )
    if params.forgetBias:
        b[size : 2 * size] += 1.0
    projected = _projected(ctx, steps, w, b, nodes)
    h0 = _initial_state(ctx, layer, states[0], steps, size, nodes)
    c0 = _initial_state(ctx, layer, states[1], steps, size, nodes)
    cell_clip = params.cellClipThreshold or DEFAULT_CELL_CLIP

    h_prev, c_prev, x_t = ctx.fresh("h_prev"), ctx.fresh("c_prev"), ctx.fresh("x_t")
    step = _Step(ctx, layer, [])
    pre = step.op(
        "Add", [x_t, step.op("MatMul", [h_prev, ctx.const(r.T.copy(), hint="R")], "rec")], "pre"
    )
    parts = [ctx.fresh(n) for n in ("pre_i", "pre_f", "pre_z", "pre_o")]
    step.nodes.append(ctx.node("Split", [pre, ctx.int64s([size] * 4, hint="split")], parts, axis=1))
    pre_i, pre_f, pre_z, pre_o = parts

    def peephole(pre_gate: str, field: str, cell: str) -> str:
        if not params.hasPeepholeVectors:
            return pre_gate
        vec = _vector(layer, getattr(weights, field), size)
        return step.op(
            "Add", [pre_gate, step.op("Mul", [cell, ctx.const(vec, hint="p")], "pc")], "peep"
        )

    i = step.gate(peephole(pre_i, "inputGatePeepholeVector", c_prev), f_act, "i")
    z = step.gate(pre_z, g_act, "z")
    if params.coupledInputAndForgetGate:
        forget = step.op("Sub", [ctx.const(np.float32(1.0), hint="one"), i], "one_minus_i")
    else:
        forget = step.gate(peephole(pre_f, "forgetGatePeepholeVector", c_prev), f_act, "f")
    kept = step.op("Mul", [c_prev, forget], "kept")
    c = step.clip(step.op("Add", [kept, step.op("Mul", [i, z], "iz")], "c_raw"), cell_clip, "c")
    o = step.gate(peephole(pre_o, "outputGatePeepholeVector", c), f_act, "o")
    nodes_h, hc = _activation(layer, ctx, h_act, c, "h_c")
    step.nodes.extend(nodes_h)
    y = step.op("Mul", [hc, o], "y")
    h_out, c_out, y_out = (
        step.op("Identity", [y], "h"),
        step.op("Identity", [c], "c_t"),
        step.op("Identity", [y], "y_t"),
    )
    (h_final, c_final), ys = _scan(
        ctx,
        [h0, c0],
        projected,
        step.nodes,
        ([h_prev, c_prev], x_t),
        ([h_out, c_out], y_out),
        reverse=reverse,
        nodes=nodes,
        aligned=aligned,
    )
    return h_final, c_final, ys


@converts("uniDirectionalLSTM")
def convert_uni_lstm(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Inputs ``[x, h0?, c0?]``, outputs ``[y, h?, c?]``."""
    _counts(layer, inputs=(1, 3), outputs=(1, 2, 3))
    p = layer.uniDirectionalLSTM
    sizes = (int(p.inputVectorSize), int(p.outputVectorSize))
    nodes: list[onnx.NodeProto] = []
    steps, had_seq = _sequence_of(layer, ctx, layer.input[0], sizes[0], nodes)
    h, c, ys = _lstm_direction(
        layer,
        ctx,
        steps,
        p.activations,
        p.params,
        p.weightParams,
        sizes,
        (1, 2),
        reverse=p.reverseInput,
        nodes=nodes,
    )
    _emit_output(
        ctx, ys, h, layer.output[0], sequence=p.params.sequenceOutput, had_seq=had_seq, nodes=nodes
    )
    for blob, state in zip(layer.output[1:], (h, c), strict=False):
        _emit_state(ctx, state, blob, nodes)
    return nodes


@converts("biDirectionalLSTM")
def convert_bi_lstm(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Inputs ``[x, h0, c0, h0_back, c0_back]`` (states optional), outputs
    ``[y, h, c, h_back, c_back]`` (states optional); ``y`` holds the forward then the
    backward output of each step."""
    _counts(layer, inputs=(1, 5), outputs=(1, 3, 5))
    p = layer.biDirectionalLSTM
    if len(p.weightParams) != 2:
        raise invalid(layer, f"needs 2 weightParams (forward, backward), has {len(p.weightParams)}")
    back_acts = p.activationsBackwardLSTM or p.activationsForwardLSTM
    sizes = (int(p.inputVectorSize), int(p.outputVectorSize))
    nodes: list[onnx.NodeProto] = []
    steps, had_seq = _sequence_of(layer, ctx, layer.input[0], sizes[0], nodes)
    hf, cf, ysf = _lstm_direction(
        layer,
        ctx,
        steps,
        p.activationsForwardLSTM,
        p.params,
        p.weightParams[0],
        sizes,
        (1, 2),
        reverse=False,
        nodes=nodes,
    )
    hb, cb, ysb = _lstm_direction(
        layer,
        ctx,
        steps,
        back_acts,
        p.params,
        p.weightParams[1],
        sizes,
        (3, 4),
        reverse=True,
        nodes=nodes,
        aligned=True,
    )
    ys, final = ctx.fresh("outputs"), ctx.fresh("final")
    nodes.append(ctx.node("Concat", [ysf, ysb], [ys], axis=2))
    nodes.append(ctx.node("Concat", [hf, hb], [final], axis=1))
    _emit_output(
        ctx,
        ys,
        final,
        layer.output[0],
        sequence=p.params.sequenceOutput,
        had_seq=had_seq,
        nodes=nodes,
    )
    for blob, state in zip(layer.output[1:], (hf, cf, hb, cb), strict=False):
        _emit_state(ctx, state, blob, nodes)
    return nodes


def _run_single_state(
    ctx: ConvertContext,
    layer: Any,
    step: Any,
    h0: str,
    projected: str,
    blobs: tuple[str, str, str],
    *,
    had_seq: bool,
    nodes: list[onnx.NodeProto],
) -> list[onnx.NodeProto]:
    """Scan a one-state step (simpleRecurrent, GRU) whose new state is also its output
    ``y`` (``blobs``: previous state, step input, ``y``), then write the layer's
    outputs: the sequence or last step, and the final state when asked."""
    p = getattr(layer, layer.WhichOneof("layer"))
    h_prev, x_t, y = blobs
    h_out, y_out = step.op("Identity", [y], "h"), step.op("Identity", [y], "y_t")
    (h_final,), ys = _scan(
        ctx,
        [h0],
        projected,
        step.nodes,
        ([h_prev], x_t),
        ([h_out], y_out),
        reverse=p.reverseInput,
        nodes=nodes,
    )
    _emit_output(
        ctx, ys, h_final, layer.output[0], sequence=p.sequenceOutput, had_seq=had_seq, nodes=nodes
    )
    if len(layer.output) > 1:
        _emit_state(ctx, h_final, layer.output[1], nodes)
    return nodes
