"""Converter for ``innerProduct``: ``[N, C]`` → ``[N, Cout]``, and the classic
``[N, C, 1, 1]`` → ``[N, Cout, 1, 1]``."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from ...errors import InvalidModelError
from ..registry import ConvertContext, converts
from ._common import check_io, invalid, unsupported


@converts("innerProduct")
def convert_inner_product(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """``innerProduct``: ``W x (+ b)`` over the flattened channel axis."""
    check_io(layer)
    p = layer.innerProduct
    if p.int8DynamicQuantize:
        raise unsupported(layer, "int8DynamicQuantize")
    x, y = layer.input[0], layer.output[0]
    rank = ctx.rank(x)
    c_in, c_out = int(p.inputChannels), int(p.outputChannels)
    if c_in <= 0 or c_out <= 0:
        raise invalid(layer, "inputChannels and outputChannels must be positive")
    weights = ctx.weights(p.weights, (c_out, c_in), hint=f"{layer.name}/W")
    gemm_inputs = [weights]
    if p.hasBias:
        gemm_inputs.append(ctx.weights(p.bias, (c_out,), hint=f"{layer.name}/b"))
    else:
        gemm_inputs.append(ctx.const(np.zeros(c_out, dtype=np.float32), hint="zero_bias"))
    _check_width(layer, ctx, x, c_in)
    ctx.set_rank(y, rank)
    if rank == 5 and ctx.classic_sequences:
        # [N, Seq, C, H, W]: the product of each step's C*H*W values.
        steps, prod, biased = ctx.fresh("steps"), ctx.fresh("matmul"), ctx.fresh("biased")
        w_t = ctx.const(
            np.ascontiguousarray(
                _decoded(layer, ctx, p.weights, c_out * c_in).reshape(c_out, c_in).T
            ),
            hint="W_t",
        )
        return [
            ctx.node("Reshape", [x, ctx.int64s([0, 0, -1], hint="shape")], [steps]),
            ctx.node("MatMul", [steps, w_t], [prod]),
            ctx.node("Add", [prod, gemm_inputs[1]], [biased]),
            ctx.node("Unsqueeze", [biased, ctx.int64s([3, 4], hint="axes")], [y]),
        ]
    if rank == 2:
        return [ctx.node("Gemm", [x, *gemm_inputs], [y], transB=1)]
    if rank == 4:
        # [N, C, 1, 1]: Core ML requires H = W = 1 here.
        flat, out2d = ctx.fresh("flat"), ctx.fresh("gemm")
        axes = ctx.int64s([2, 3], hint="axes")
        return [
            ctx.node("Flatten", [x], [flat], axis=1),
            ctx.node("Gemm", [flat, *gemm_inputs], [out2d], transB=1),
            ctx.node("Unsqueeze", [out2d, axes], [y]),
        ]
    if rank >= 3:
        # ND inputs: the product runs over the last axis, as batchedMatMul does.
        w_t = ctx.const(
            np.ascontiguousarray(
                _decoded(layer, ctx, p.weights, c_out * c_in).reshape(c_out, c_in).T
            ),
            hint="W_t",
        )
        prod = ctx.fresh("matmul")
        return [
            ctx.node("MatMul", [x, w_t], [prod]),
            ctx.node("Add", [prod, gemm_inputs[1]], [y]),
        ]
    raise invalid(layer, f"input rank {rank} is not supported")


def _check_width(layer: Any, ctx: ConvertContext, x: str, c_in: int) -> None:
    """Refuse, naming the layer, an input whose values per example (per step) are
    known now and are not the ``inputChannels`` the weights take."""
    rank = ctx.rank(x)
    try:
        shape = ctx.static_shape(x)
    except InvalidModelError:
        return
    if rank in (2, 4) or (rank == 5 and ctx.classic_sequences):
        per_step = shape[1:] if rank in (2, 4) else shape[2:]
    else:
        per_step = shape[-1:]
    if None in per_step:
        return
    width = int(np.prod(per_step))
    if width != c_in:
        raise invalid(layer, f"its input has {width} values per example, its weights take {c_in}")


def _decoded(layer: Any, ctx: ConvertContext, params: Any, count: int) -> np.ndarray:
    from ...coreml.weights import decode_weights

    return decode_weights(params, count=count, layer=layer.name).astype(np.float32)
