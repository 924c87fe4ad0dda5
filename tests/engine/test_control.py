"""Control flow (branch, loop, loopBreak, loopContinue) is refused when the model is
compiled, in one line that names the layer and the reason."""

from __future__ import annotations

import pytest
from mlupdated.engine.compile import compile_network
from mlupdated.engine.registry import supported_layer_types
from mlupdated.errors import UnsupportedLayerError

from .helpers import build_spec


def _branch(b) -> None:
    branch = b.add_branch("choose", "cond")
    from coremltools.models.neural_network import NeuralNetworkBuilder

    for target in (branch.branch.ifBranch, branch.branch.elseBranch):
        sub = NeuralNetworkBuilder(nn_spec=target, disable_rank5_shape_mapping=True)
        sub.add_copy("inside", "x", "y")


def _loop(b) -> None:
    b.add_loop("repeat", max_iterations=3)


@pytest.mark.parametrize(
    ("add", "layer", "reason"),
    [
        (_branch, "choose", r"'branch'.*ONNX If"),
        (_loop, "repeat", r"'loop'.*ONNX Loop"),
    ],
)
def test_refused_in_one_line(add, layer: str, reason: str) -> None:
    spec = build_spec({"x": (1, 3), "cond": (1,)}, ["y"], add, nd=True)
    with pytest.raises(UnsupportedLayerError, match=reason) as refused:
        compile_network(spec, outputs=["x"])
    assert "\n" not in str(refused.value)
    assert refused.value.layer == layer


def test_refused_types_are_not_listed_as_supported() -> None:
    assert {"branch", "loop", "loopBreak", "loopContinue"}.isdisjoint(supported_layer_types())
    assert {"uniDirectionalLSTM", "gather", "mvn"} <= set(supported_layer_types())
