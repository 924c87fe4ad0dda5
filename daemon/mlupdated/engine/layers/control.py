"""Layer types refused for a known reason: control flow.

``branch`` and ``loop`` hold sub-networks whose layers read and write the enclosing
network's blobs by name (a loop body updates them in place and may stop early with
``loopBreak``/``loopContinue``). An ONNX ``If``/``Loop`` needs explicit subgraph inputs
and outputs instead, which takes a dataflow rewrite of the enclosing network the engine
does not do, so these are refused rather than compiled half right.
"""

from __future__ import annotations

from ..registry import refuses

_BY_NAME = (
    "its sub-networks write the enclosing network's blobs by name; compiling that to an "
    "ONNX {op} needs a dataflow rewrite mlupdated does not do"
)

refuses("branch", _BY_NAME.format(op="If"))
refuses("loop", _BY_NAME.format(op="Loop"))
refuses("loopBreak", "it only exists inside a loop, which mlupdated cannot run")
refuses("loopContinue", "it only exists inside a loop, which mlupdated cannot run")
