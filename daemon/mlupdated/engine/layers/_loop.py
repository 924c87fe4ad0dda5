"""The ONNX ``Loop`` node of a Core ML ``loop`` layer (see ``control``): the body's
scope with its carried blobs bound to the body's inputs, and the node itself, whose
outputs then name the carried blobs and, for blobs first written inside the loop, the
last value of its scan outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ._common import refused
from ._scope import BROKEN, SKIPPING, Scope, elem_type, subgraph


def body_scope(
    scope: Scope, first: str, carried: list[str]
) -> tuple[Scope, list[onnx.ValueInfoProto]]:
    """The body's scope, its carried blobs bound to the body's inputs (declared in the
    returned list after the iteration number and the condition) and its flags false."""
    ctx = scope.ctx
    body = scope.child(in_loop=True)
    iteration, cond_in = ctx.fresh("iteration"), ctx.fresh("cond_in")
    inputs = [
        helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
        helper.make_tensor_value_info(cond_in, TensorProto.BOOL, []),
    ]
    shadow = [
        ctx.node("Identity", [ctx.const(np.array(0, dtype=np.int64), hint="zero")], [iteration]),
        ctx.node("Identity", [first], [cond_in]),
    ]
    for blob in carried:
        before = scope.must(None, blob)
        name = ctx.fresh(f"{blob}__in")
        rank = ctx.rank(before)
        ctx.set_rank(name, rank)
        inputs.append(helper.make_tensor_value_info(name, elem_type(blob), [None] * rank))
        shadow.append(ctx.node("Identity", [before], [name]))
        body.values[blob] = name
    ctx.extend_graph(shadow)
    body.values[BROKEN] = body.values[SKIPPING] = scope.constant(False)
    return body, inputs


def emit_loop(
    scope: Scope,
    layer: Any,
    body: Scope,
    inputs: list[onnx.ValueInfoProto],
    head: list[str],
    blobs: tuple[list[str], list[str]],
    go_on: str,
) -> None:
    """The ``Loop`` node (``head``: trip count, first condition); ``blobs``: the carried
    blobs, which then name its outputs, and the scanned ones, which then name the last
    value of its scan outputs."""
    ctx = scope.ctx
    carried, scanned = blobs
    initial = [scope.must(layer, blob) for blob in carried]
    finals = [body.must(layer, blob) for blob in carried]
    for blob, before, final in zip(carried, initial, finals, strict=True):
        if ctx.rank(final) != ctx.rank(before):
            raise refused(layer, f"blob {blob!r} changes rank inside the loop")
    steps = [body.must(layer, blob) for blob in scanned]
    results = [
        (BROKEN, go_on),
        *zip(carried, finals, strict=True),
        *zip(scanned, steps, strict=True),
    ]
    graph = subgraph(body, "body", inputs, results)
    outs = [ctx.fresh(f"{blob}__loop") for blob in carried]
    every = [ctx.fresh(f"{blob}__steps") for blob in scanned]
    scope.nodes.append(ctx.node("Loop", [*head, *initial], [*outs, *every], body=graph))
    shadow = []
    for blob, out, final in zip(carried, outs, finals, strict=True):
        shadow.append(ctx.node("Identity", [final], [out]))
        ctx.set_rank(out, ctx.rank(final))
        scope.values[blob] = out
    last_index = ctx.const(np.array(-1, dtype=np.int64), hint="last")
    for blob, all_steps, step in zip(scanned, every, steps, strict=True):
        last = ctx.fresh(f"{blob}__last")
        scope.nodes.append(ctx.node("Gather", [all_steps, last_index], [last], axis=0))
        shadow.append(ctx.node("Identity", [step], [last]))
        ctx.set_rank(last, ctx.rank(step))
        scope.values[blob] = last
    ctx.extend_graph(shadow)
