"""What the control-flow layers (``branch``, ``loop``) need to know about the blobs of
their sub-networks, read from the spec alone: which blobs a list of layers writes, and
which it reads before writing them (what a sub-network needs from the code before it).

Core ML's sub-networks read and write the enclosing network's blobs by name; these sets
let ``layers.control`` turn that into the explicit inputs and outputs of an ONNX
``If``/``Loop``. Both walk nested sub-networks (a branch inside a loop body...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

CONTROL = ("branch", "loop")
JUMPS = ("loopBreak", "loopContinue")


def sub_networks(layer: Any) -> list[list[Any]]:
    """The layer lists of a control layer's sub-networks (none for other layers): a
    branch's if and else networks, a loop's condition and body networks, in the order
    they first run."""
    kind = layer.WhichOneof("layer")
    if kind == "branch":
        return [list(layer.branch.ifBranch.layers), list(layer.branch.elseBranch.layers)]
    if kind == "loop":
        return [list(layer.loop.conditionNetwork.layers), list(layer.loop.bodyNetwork.layers)]
    return []


def layer_reads(layer: Any) -> list[str]:
    """The blobs a layer reads itself (a loop also reads its condition variable)."""
    reads = list(layer.input)
    if layer.WhichOneof("layer") == "loop" and layer.loop.conditionVar:
        reads.append(layer.loop.conditionVar)
    return reads


def writes(layers: Iterable[Any]) -> dict[str, None]:
    """Every blob the layers write, nested sub-networks included (ordered, no repeats)."""
    out: dict[str, None] = {}
    for layer in layers:
        for blob in layer.output:
            out[blob] = None
        for sub in sub_networks(layer):
            out.update(writes(sub))
    return out


def exposed_reads(layers: Sequence[Any]) -> set[str]:
    """The blobs the layers may read before they write them (their value comes from
    before the layers run). A write inside a sub-network may not happen, so only a
    plain layer's outputs hide later reads."""
    written: set[str] = set()
    out: set[str] = set()
    for layer in layers:
        out.update(blob for blob in layer_reads(layer) if blob not in written)
        for sub in sub_networks(layer):
            out.update(exposed_reads(sub) - written)
        if layer.WhichOneof("layer") not in CONTROL:
            written.update(layer.output)
    return out


def may_jump(layers: Iterable[Any]) -> bool:
    """Whether a ``loopBreak``/``loopContinue`` of the enclosing loop may run among
    ``layers``: directly or inside a branch (a nested loop's own jumps are its own)."""
    for layer in layers:
        kind = layer.WhichOneof("layer")
        if kind in JUMPS:
            return True
        if kind == "branch" and any(may_jump(sub) for sub in sub_networks(layer)):
            return True
    return False


def has_control_flow(layers: Iterable[Any]) -> bool:
    """Whether any layer is a ``branch`` or a ``loop``."""
    return any(layer.WhichOneof("layer") in CONTROL for layer in layers)


def nested_layers(layers: Iterable[Any]) -> list[Any]:
    """The layers inside the control layers' sub-networks, at any depth."""
    out: list[Any] = []
    for layer in layers:
        for sub in sub_networks(layer):
            out.extend(sub)
            out.extend(nested_layers(sub))
    return out


def rewritten(layers: Iterable[Any]) -> set[str]:
    """Blobs written by more than one of ``layers`` (a control layer's sub-networks
    count as one writer)."""
    seen: set[str] = set()
    again: set[str] = set()
    for layer in layers:
        for blob in layer.output if layer.WhichOneof("layer") not in CONTROL else writes([layer]):
            (again if blob in seen else seen).add(blob)
    return again
