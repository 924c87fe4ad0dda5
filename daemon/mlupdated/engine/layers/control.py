"""Converters for control flow: ``branch`` as an ONNX ``If``, ``loop`` as an ONNX
``Loop``, with ``loopBreak``/``loopContinue`` inside a loop body.

Core ML's sub-networks read and write the enclosing network's blobs by name (a loop
body updates them in place); ONNX subgraphs may read outer values by name but return
what they write as outputs. The rewrite (names: ``layers._scope``; which blobs:
``engine.dataflow``):

* ``branch``: the condition's absolute value > 1e-6 picks the if network, else the else
  network. Blobs either writes that are read afterwards become the ``If``'s outputs; a
  blob written in one branch only keeps its value from before in the other (refused,
  naming the blob, when it has none).
* ``loop``: the trip count is the layer's input (truncated), else ``maxLoopIterations``;
  with a ``conditionVar`` its ``conditionNetwork`` runs before the loop and after each
  iteration (a while loop, bounded by the count when there is one). Blobs the body or
  the condition network write that have a value before the loop are loop-carried;
  one first written inside the loop and read after it is a scan output of the ``Loop``
  (its value at every iteration), of which the code after the loop reads the last (a
  loop that runs no iteration leaves it without a value, an error when it runs).
* ``loopBreak``/``loopContinue``: set the body's "broken"/"skipping" flags. What follows
  a branch that may set them runs inside an ``If`` on "skipping"; the loop's condition
  is "not broken" (and the condition network's result, which is not re-evaluated after
  a break).

Each example of a batch may take its own path, so a graph with control flow runs one
example at a time (its condition blobs hold one value; ``stages`` splits a batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from ..dataflow import JUMPS, exposed_reads, layer_reads, may_jump, sub_networks, writes
from ..registry import ConvertContext, converts
from ._common import invalid, refused
from ._loop import body_scope, emit_loop
from ._scope import BROKEN, FLAGS, SKIPPING, Scope, safe_name, subgraph


def compile_block(scope: Scope, layers: list[Any], later: set[str]) -> None:
    """Compile ``layers`` into ``scope``; ``later`` holds the blobs read after them."""
    for i, layer in enumerate(layers):
        kind = layer.WhichOneof("layer")
        rest = layers[i + 1 :]
        after = later | exposed_reads(rest)
        if kind in JUMPS:
            if not scope.in_loop:
                raise refused(layer, "it runs outside the body network of a loop")
            scope.values[SKIPPING] = scope.constant(True)
            if kind == "loopBreak":
                scope.values[BROKEN] = scope.constant(True)
            return  # the rest of this network never runs
        if kind == "branch":
            _branch(scope, layer, after)
        elif kind == "loop":
            _loop(scope, layer, after)
        else:
            scope.plain(layer)
        jumps = kind == "branch" and any(may_jump(sub) for sub in sub_networks(layer))
        if rest and scope.in_loop and jumps:
            _guarded(scope, layer, SKIPPING, rest, later)
            return


def _merge(
    scope: Scope,
    layer: Any,
    cond: str,
    then: Scope,
    other: Scope,
    later: set[str],
    *,
    skipping: bool = False,
) -> None:
    """An ``If`` on ``cond`` choosing between what ``then`` and ``other`` wrote.

    ``skipping``: ``then`` is the rest of a loop iteration skipped by a break/continue.
    A blob without a value before that the rest would write then gets a placeholder:
    nothing reads it in this iteration (what follows is skipped too), in the next one
    before writing it (it would not be defined in the first one either), or after the
    loop (refused by ``_carried``)."""
    ctx = scope.ctx
    kept: list[tuple[str, str, str]] = []
    for blob in dict.fromkeys([*then.values, *other.values]):
        if blob not in FLAGS and blob not in later:
            continue
        a, b = then.lookup(blob), other.lookup(blob)
        if a is None and b is not None and skipping:
            a = ctx.const(np.zeros([1] * ctx.rank(b), np.float32), hint="unset")
            ctx.set_rank(a, ctx.rank(b))
        if a is None or b is None:
            side = "the condition holds" if a is not None else "it does not"
            raise refused(
                layer,
                f"blob {blob!r} is written only when {side} and has no value before the branch",
            )
        if ctx.rank(a) != ctx.rank(b):
            raise refused(
                layer,
                f"blob {blob!r} has rank {ctx.rank(a)} on one path, {ctx.rank(b)} on the other",
            )
        kept.append((blob, a, b))
    if not kept:
        return
    outs = [ctx.fresh(f"{safe_name(blob)}__if") for blob, _, _ in kept]
    then_graph = subgraph(then, "then", [], [(blob, a) for blob, a, _ in kept])
    else_graph = subgraph(other, "else", [], [(blob, b) for blob, _, b in kept])
    scope.nodes.append(ctx.node("If", [cond], outs, then_branch=then_graph, else_branch=else_graph))
    shadow = []
    for (blob, a, _), out in zip(kept, outs, strict=True):
        shadow.append(ctx.node("Identity", [a], [out]))
        ctx.set_rank(out, ctx.rank(a))
        scope.values[blob] = out
    ctx.extend_graph(shadow)


def _branch(scope: Scope, layer: Any, later: set[str]) -> None:
    if len(layer.input) != 1 or layer.output:
        raise invalid(
            layer, f"needs 1 input and no output, has {len(layer.input)} and {len(layer.output)}"
        )
    cond = scope.truth(layer, layer.input[0])
    if_layers, else_layers = sub_networks(layer)
    then, other = scope.child(), scope.child()
    compile_block(then, if_layers, later)
    compile_block(other, else_layers, later)
    _merge(scope, layer, cond, then, other, later)


def _guarded(scope: Scope, layer: Any, flag: str, layers: list[Any], later: set[str]) -> None:
    """``layers`` run only when the flag is false (after a possible break/continue)."""
    cond = scope.must(layer, flag)
    skip, run = scope.child(), scope.child()
    compile_block(run, layers, later)
    _merge(scope, layer, cond, skip, run, later, skipping=True)


def _unconditional(scope: Scope, layers: list[Any], later: set[str]) -> None:
    """A condition network: runs in ``scope`` where no loopBreak/Continue may be."""
    inner = scope.child(in_loop=False)
    compile_block(inner, layers, later)
    scope.adopt(inner)


def _trip_count(scope: Scope, layer: Any, has_cond: bool) -> str:
    """The ONNX ``M`` input: the layer's input truncated, else maxLoopIterations ("" for
    a while loop without a bound)."""
    ctx = scope.ctx
    if layer.input:
        scalar, count = scope.scalar(layer, layer.input[0]), ctx.fresh("trip_count")
        scope.emit([ctx.node("Cast", [scalar], [count], to=TensorProto.INT64)])
        ctx.set_rank(count, 0)
        return count
    limit = int(layer.loop.maxLoopIterations)
    if has_cond and limit == 0:
        return ""
    return ctx.const(np.array(limit, dtype=np.int64), hint="max_iterations")


def _loop(scope: Scope, layer: Any, later: set[str]) -> None:
    cond_layers, body_layers = sub_networks(layer)
    cond_var = layer.loop.conditionVar
    if layer.output or len(layer.input) > 1:
        raise invalid(
            layer,
            f"needs at most 1 input and no output, has {len(layer.input)} and {len(layer.output)}",
        )
    if cond_layers and not cond_var:
        raise invalid(layer, "has a conditionNetwork but no conditionVar")
    if may_jump(cond_layers):
        raise refused(layer, "its conditionNetwork holds a loopBreak or loopContinue")
    count = _trip_count(scope, layer, bool(cond_var))
    # Read again by the next iteration: whatever the loop reads before writing it.
    body_later = later | exposed_reads(cond_layers + body_layers) | set(layer_reads(layer))
    if cond_var:
        _unconditional(scope, cond_layers, body_later)
        first = scope.truth(layer, cond_var)
    else:
        first = scope.constant(True)
    carried, scanned = _carried(scope, cond_layers + body_layers, later)
    if not carried and not scanned:
        return  # nothing the loop writes is seen outside it

    body, inputs = body_scope(scope, first, carried)
    not_yet = body.must(layer, BROKEN)
    compile_block(body, body_layers, body_later)
    broken = body.must(layer, BROKEN)
    if cond_var:
        if broken != not_yet:  # the condition network does not run after a break
            _guarded(body, layer, BROKEN, cond_layers, body_later)
        else:
            _unconditional(body, cond_layers, body_later)
    ctx = scope.ctx
    go_on = ctx.fresh("go_on")
    body.emit([ctx.node("Not", [broken], [go_on])])
    if cond_var:
        holds, both = body.truth(layer, cond_var), ctx.fresh("go_on")
        body.emit([ctx.node("And", [go_on, holds], [both])])
        go_on = both
    ctx.set_rank(go_on, 0)
    emit_loop(scope, layer, body, inputs, [count, first], (carried, scanned), go_on)


def _carried(scope: Scope, layers: list[Any], later: set[str]) -> tuple[list[str], list[str]]:
    """The blobs a loop writes that have a value before it (its carried values), and
    those first written inside it that the code after the loop reads (its scanned
    values: the last iteration's is read)."""
    carried, scanned = [], []
    for blob in writes(layers):
        if scope.lookup(blob) is not None:
            carried.append(blob)
        elif blob in later:
            scanned.append(blob)
    return carried, scanned


@converts("branch", "loop")
def convert_control(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A top-level ``branch``/``loop``: its ``If``/``Loop`` node; the blobs it writes
    are renamed to that node's outputs for the layers after it (``ctx.renames``)."""
    network: list[Any] = getattr(ctx, "network_layers", [layer])
    index: int = getattr(ctx, "layer_index", 0)
    renames: dict[str, str] = getattr(ctx, "renames", {})
    later = exposed_reads(network[index + 1 :]) | set(getattr(ctx, "network_outputs", ()))
    for blob in writes([layer]):
        ctx.reserve(blob)

    def outer(blob: str) -> str | None:
        tensor = renames.get(blob, blob)
        return tensor if ctx.has_blob(tensor) else None

    top = Scope(ctx, outer=outer, in_loop=False)
    mark = len(ctx.graph_nodes)
    try:
        compile_block(top, [layer], later)
    finally:
        del ctx.graph_nodes[mark:]
        ctx.extend_graph([])  # the shapes inferred from the shadow are stale
    for blob, tensor in top.values.items():
        if blob not in FLAGS:
            renames[blob] = tensor
    return top.nodes


@converts(*JUMPS)
def convert_jump(layer: Any, ctx: ConvertContext) -> list[onnx.NodeProto]:
    """A ``loopBreak``/``loopContinue`` outside any loop: refused."""
    raise refused(layer, "it runs outside the body network of a loop")
