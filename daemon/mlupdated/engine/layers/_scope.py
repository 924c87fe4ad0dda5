"""The blob names of a sub-network being compiled into an ONNX subgraph.

Core ML's sub-networks write the enclosing network's blobs by name, as often as they
like; an ONNX graph writes each tensor name once, in the whole model (subgraphs
included). A :class:`Scope` maps each blob to the tensor that holds its current value:
every write gets a fresh tensor, and a read finds the newest one, in this scope or in
the ones around it. The flags of a loop body (broken, skipping the rest of the
iteration) live there too, under names no Core ML blob can have.

While a control layer compiles, the nodes of its sub-networks are also appended, flat,
to the graph the context is building (its "shadow"), so that converters which ask
``ctx.static_shape`` see the tensors they read; the control converter removes them
once the ``If``/``Loop`` node is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import InvalidModelError
from ..registry import FLOAT, ConvertContext, converter_for, run_converter
from ._common import invalid

BROKEN = "\x00broken"  # a loopBreak ran: the loop stops
SKIPPING = "\x00skipping"  # a loopBreak or loopContinue ran: the rest of the body does not
FLAGS = (BROKEN, SKIPPING)

# BranchLayerParams: the if branch runs when the absolute value of the input is > 1e-6.
THRESHOLD = 1e-6


class Scope:
    """Blob → tensor names written in one (sub-)network, and the nodes that write them."""

    def __init__(
        self,
        ctx: ConvertContext,
        parent: Scope | None = None,
        *,
        outer: Callable[[str], str | None] | None = None,
        in_loop: bool | None = None,
    ) -> None:
        self.ctx = ctx
        self.parent = parent
        self.values: dict[str, str] = {}
        self.nodes: list[onnx.NodeProto] = []
        self._outer = outer
        self.in_loop = bool(in_loop if in_loop is not None else parent and parent.in_loop)

    def lookup(self, blob: str) -> str | None:
        """The tensor holding ``blob`` now, or None when nothing wrote it yet."""
        if blob in self.values:
            return self.values[blob]
        if self.parent is not None:
            return self.parent.lookup(blob)
        return self._outer(blob) if self._outer is not None else None

    def must(self, layer: Any, blob: str) -> str:
        """The tensor holding ``blob`` now; reading it before any write is refused."""
        tensor = self.lookup(blob)
        if tensor is None:
            where = f"layer {layer.name!r}" if layer is not None else "a layer"
            raise InvalidModelError(
                f"{where} reads blob {blob!r} before any layer produces it",
                layer=getattr(layer, "name", None),
            )
        return tensor

    def child(self, *, in_loop: bool | None = None) -> Scope:
        return Scope(self.ctx, self, in_loop=in_loop)

    def emit(self, nodes: list[onnx.NodeProto]) -> None:
        """Nodes of this scope (also added to the context's shadow graph)."""
        self.nodes.extend(nodes)
        self.ctx.extend_graph(nodes)

    def adopt(self, other: Scope) -> None:
        """Take over what an unconditional child scope wrote (same subgraph)."""
        self.nodes.extend(other.nodes)
        self.values.update(other.values)

    def constant(self, value: bool) -> str:
        """A boolean scalar (an initializer of the main graph, read from any scope)."""
        name = self.ctx.const(np.array(value, dtype=np.bool_), hint="flag")
        self.ctx.set_rank(name, 0)
        return name

    def scalar(self, layer: Any, blob: str) -> str:
        """A one-value blob (per example) as an ONNX scalar; a blob known to hold more
        values is refused. A batch of several examples fails when run: ``stages`` runs
        a network with control flow one example at a time."""
        tensor = self.must(layer, blob)
        ctx = self.ctx
        try:
            dims = ctx.static_shape(tensor)[1:]
        except InvalidModelError:
            dims = []
        if all(d is not None for d in dims) and int(np.prod(dims)) > 1:
            raise invalid(layer, f"blob {blob!r} holds {int(np.prod(dims))} values, not one")
        scalar = ctx.fresh("scalar")
        self.emit([ctx.node("Reshape", [tensor, ctx.int64s([], hint="scalar")], [scalar])])
        ctx.set_rank(scalar, 0)
        return scalar

    def truth(self, layer: Any, blob: str) -> str:
        """Core ML's test of a condition blob (one value) as an ONNX bool scalar:
        its absolute value is above 1e-6."""
        scalar = self.scalar(layer, blob)
        ctx = self.ctx
        size, above = ctx.fresh("cond_abs"), ctx.fresh("cond_true")
        self.emit(
            [
                ctx.node("Abs", [scalar], [size]),
                ctx.node("Greater", [size, ctx.const(np.float32(THRESHOLD), hint="eps")], [above]),
            ]
        )
        ctx.set_rank(above, 0)
        return above

    def plain(self, layer: Any) -> None:
        """Compile a layer that is not control flow, reading and writing through names."""
        ctx = self.ctx
        convert = converter_for(layer)
        renamed = type(layer)()
        renamed.CopyFrom(layer)
        del renamed.input[:]
        del renamed.output[:]
        renamed.input.extend(self.must(layer, blob) for blob in layer.input)
        fresh = [ctx.fresh(safe_name(blob)) for blob in layer.output]
        renamed.output.extend(fresh)
        previous, ctx.layer = ctx.layer, layer
        try:
            nodes = run_converter(convert, renamed, ctx, named=layer)
        finally:
            ctx.layer = previous
        self.emit(nodes)
        for blob, tensor in zip(layer.output, fresh, strict=True):
            if not ctx.has_blob(tensor):
                raise invalid(layer, f"did not produce its output {blob!r}")
            self.values[blob] = tensor


def safe_name(blob: str) -> str:
    return blob.lstrip("\x00") or "blob"


def elem_type(blob: str) -> int:
    return TensorProto.BOOL if blob in FLAGS else FLOAT


def subgraph(
    scope: Scope,
    name: str,
    inputs: list[onnx.ValueInfoProto],
    results: list[tuple[str, str]],
) -> onnx.GraphProto:
    """A subgraph of the scope's nodes whose outputs are ``results`` ((blob, tensor)
    pairs), each through an Identity: a subgraph output must be made inside it."""
    ctx = scope.ctx
    nodes = list(scope.nodes)
    outputs = []
    for blob, tensor in results:
        out = ctx.fresh(f"{safe_name(blob)}__out")
        nodes.append(ctx.node("Identity", [tensor], [out]))
        rank = ctx.rank(tensor)
        outputs.append(helper.make_tensor_value_info(out, elem_type(blob), [None] * rank))
    return helper.make_graph(nodes, ctx.fresh(name), inputs, outputs)
