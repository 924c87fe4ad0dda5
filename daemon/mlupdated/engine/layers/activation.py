"""Converters for the activation family: ``activation`` (every ActivationParams kind)
and the standalone ``gelu`` layer (``clampedReLU`` lives with ``clip``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx

from ..registry import ConvertContext, converts
from ._common import check_io, invalid, per_channel_shape, same_rank_output

# GeluLayerParams.GeluMode values.
_GELU_EXACT, _GELU_TANH, _GELU_SIGMOID = 0, 1, 2
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# The sigmoid approximation of GELU as Core ML defines it: x * sigmoid(1.702 x).
_GELU_SIGMOID_FACTOR = 1.702


def _per_channel(layer: Any, ctx: ConvertContext, params: Any, *, rank: int, hint: str) -> str:
    """Per-channel (or single) parameters, shaped to broadcast over the channel axis."""
    values = _decode(layer, params)
    return ctx.const(values.reshape(per_channel_shape(values.size, rank)), hint=hint)


def _decode(layer: Any, params: Any) -> np.ndarray:
    from ...coreml.weights import decode_weights

    values = decode_weights(params, count=None, layer=layer.name)
    if values.size == 0:
        raise invalid(layer, "per-channel parameters are empty")
    return values.astype(np.float32)


def _scalar(ctx: ConvertContext, value: float) -> str:
    return ctx.const(np.float32(value), hint="scalar")


def _affine(ctx: ConvertContext, x: str, out: str, alpha: float, beta: float) -> list:
    scaled = ctx.fresh("scaled")
    return [
        ctx.node("Mul", [x, _scalar(ctx, alpha)], [scaled]),
        ctx.node("Add", [scaled, _scalar(ctx, beta)], [out]),
    ]


@converts("activation")
def convert_activation(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """Every ``ActivationParams`` kind, with its per-channel or scalar parameters."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    params = layer.activation
    kind = params.WhichOneof("NonlinearityType")
    rank = ctx.rank(x)
    same_rank_output(layer, ctx)
    if kind == "linear":
        return _affine(ctx, x, y, params.linear.alpha, params.linear.beta)
    if kind == "ReLU":
        return [ctx.node("Relu", [x], [y])]
    if kind == "leakyReLU":
        return [ctx.node("LeakyRelu", [x], [y], alpha=params.leakyReLU.alpha)]
    if kind == "thresholdedReLU":
        return [ctx.node("ThresholdedRelu", [x], [y], alpha=params.thresholdedReLU.alpha)]
    if kind == "PReLU":
        slope = _per_channel(layer, ctx, params.PReLU.alpha, rank=rank, hint="prelu_alpha")
        return [ctx.node("PRelu", [x, slope], [y])]
    if kind == "tanh":
        return [ctx.node("Tanh", [x], [y])]
    if kind == "scaledTanh":
        inner, tanh = ctx.fresh("inner"), ctx.fresh("tanh")
        return [
            ctx.node("Mul", [x, _scalar(ctx, params.scaledTanh.beta)], [inner]),
            ctx.node("Tanh", [inner], [tanh]),
            ctx.node("Mul", [tanh, _scalar(ctx, params.scaledTanh.alpha)], [y]),
        ]
    if kind == "sigmoid":
        return [ctx.node("Sigmoid", [x], [y])]
    if kind == "sigmoidHard":
        p = params.sigmoidHard
        return [ctx.node("HardSigmoid", [x], [y], alpha=p.alpha, beta=p.beta)]
    if kind == "ELU":
        return [ctx.node("Elu", [x], [y], alpha=params.ELU.alpha)]
    if kind == "softsign":
        return [ctx.node("Softsign", [x], [y])]
    if kind == "softplus":
        return [ctx.node("Softplus", [x], [y])]
    if kind == "parametricSoftplus":
        # y = alpha_c * log(1 + exp(beta_c * x)), per channel.
        p = params.parametricSoftplus
        alpha = _per_channel(layer, ctx, p.alpha, rank=rank, hint="psp_alpha")
        beta = _per_channel(layer, ctx, p.beta, rank=rank, hint="psp_beta")
        inner, soft = ctx.fresh("inner"), ctx.fresh("softplus")
        return [
            ctx.node("Mul", [x, beta], [inner]),
            ctx.node("Softplus", [inner], [soft]),
            ctx.node("Mul", [soft, alpha], [y]),
        ]
    raise invalid(layer, f"activation kind {kind!r} is not set or not known")


@converts("gelu")
def convert_gelu(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """GELU, exact or in one of Core ML's two approximations (tanh, sigmoid)."""
    check_io(layer)
    x, y = layer.input[0], layer.output[0]
    same_rank_output(layer, ctx)
    mode = layer.gelu.mode
    half_x = ctx.fresh("half_x")
    nodes = [ctx.node("Mul", [x, _scalar(ctx, 0.5)], [half_x])]
    if mode == _GELU_EXACT:
        # 0.5 x (1 + erf(x / sqrt 2))
        scaled, erf, one_plus = ctx.fresh("scaled"), ctx.fresh("erf"), ctx.fresh("one_plus")
        nodes += [
            ctx.node("Mul", [x, _scalar(ctx, 1.0 / math.sqrt(2.0))], [scaled]),
            ctx.node("Erf", [scaled], [erf]),
            ctx.node("Add", [erf, _scalar(ctx, 1.0)], [one_plus]),
            ctx.node("Mul", [half_x, one_plus], [y]),
        ]
        return nodes
    if mode == _GELU_TANH:
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        names = [ctx.fresh(h) for h in ("cube", "cube_s", "inner", "inner_s", "tanh", "one_plus")]
        cube, cube_s, inner, inner_s, tanh, one_plus = names
        nodes += [
            ctx.node("Pow", [x, _scalar(ctx, 3.0)], [cube]),
            ctx.node("Mul", [cube, _scalar(ctx, 0.044715)], [cube_s]),
            ctx.node("Add", [x, cube_s], [inner]),
            ctx.node("Mul", [inner, _scalar(ctx, _SQRT_2_OVER_PI)], [inner_s]),
            ctx.node("Tanh", [inner_s], [tanh]),
            ctx.node("Add", [tanh, _scalar(ctx, 1.0)], [one_plus]),
            ctx.node("Mul", [half_x, one_plus], [y]),
        ]
        return nodes
    if mode == _GELU_SIGMOID:
        scaled, sig = ctx.fresh("scaled"), ctx.fresh("sigmoid")
        return [
            ctx.node("Mul", [x, _scalar(ctx, _GELU_SIGMOID_FACTOR)], [scaled]),
            ctx.node("Sigmoid", [scaled], [sig]),
            ctx.node("Mul", [x, sig], [y]),
        ]
    raise invalid(layer, f"GELU mode {mode} is not known")
