"""Control flow against NumPy: ``branch`` (ONNX If), ``loop`` (ONNX Loop) with a fixed
count, a count from a blob, a condition network, ``loopBreak`` and ``loopContinue``;
sub-networks that update the enclosing network's blobs in place (``copy``); a batch
run one example at a time; and the cases still refused, in one line naming the layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlupdated.engine.compile import compile_network, default_outputs
from mlupdated.engine.predictor import Predictor
from mlupdated.engine.registry import supported_layer_types
from mlupdated.engine.runtime import Session
from mlupdated.errors import EngineError, InvalidModelError, UnsupportedLayerError

from .helpers import assert_close, build_spec, rng, run_spec


def _sub(network: Any) -> Any:
    from coremltools.models.neural_network import NeuralNetworkBuilder

    return NeuralNetworkBuilder(nn_spec=network, disable_rank5_shape_mapping=True)


def _const(b, name: str, value) -> None:
    value = np.asarray(value, dtype=np.float32).reshape(1)
    b.add_load_constant_nd(name, name, value, value.shape)


def _x(*shape: int, seed: int) -> np.ndarray:
    return rng(seed).standard_normal((1, *shape)).astype(np.float32)


def _refusal(spec, layer: str, match: str) -> None:
    with pytest.raises(UnsupportedLayerError, match=match) as refused:
        compile_network(spec)
    assert "\n" not in str(refused.value)
    assert f"{layer!r}" in str(refused.value)
    assert refused.value.layer == layer


# -- branch ----------------------------------------------------------------------------


def _sign_branch(b) -> None:
    """y = 3x if sum(x) > 0 else x - 5, then z = y + 1 after the branch."""
    b.add_reduce_sum("sum", "x", "total", axes=None, keepdims=False, reduce_all=True)
    b.add_greater_than("positive", ["total"], "cond", alpha=0.0)
    branch = b.add_branch("choose", "cond")
    _sub(branch.branch.ifBranch).add_elementwise("triple", ["x"], "y", "MULTIPLY", alpha=3.0)
    _sub(branch.branch.elseBranch).add_elementwise("shift", ["x"], "y", "ADD", alpha=-5.0)
    b.add_elementwise("after", ["y"], "z", "ADD", alpha=1.0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_branch_takes_the_side_of_a_computed_condition(sign: float) -> None:
    x = np.abs(_x(4, seed=1)) * np.float32(sign)
    spec = build_spec({"x": (1, 4)}, ["y", "z"], _sign_branch, nd=True)
    got = run_spec(spec, {"x": x})
    y = 3 * x if x.sum() > 0 else x - 5
    assert_close(got["y"], y)
    assert_close(got["z"], y + 1)


def _one_sided(b) -> None:
    """acc = x; if cond: acc = acc * 2 (no else network)."""
    b.add_copy("start", "x", "acc")
    branch = b.add_branch("maybe", "cond")
    body = _sub(branch.branch.ifBranch)
    body.add_elementwise("double", ["acc"], "doubled", "MULTIPLY", alpha=2.0)
    body.add_copy("update", "doubled", "acc")


@pytest.mark.parametrize("cond", [1.0, 0.0, 5e-7, -0.5])
def test_a_blob_written_in_one_branch_keeps_its_value_in_the_other(cond: float) -> None:
    x = _x(3, seed=2)
    spec = build_spec({"x": (1, 3), "cond": (1, 1)}, ["acc"], _one_sided, nd=True)
    got = run_spec(spec, {"x": x, "cond": np.full((1, 1), cond, np.float32)})
    assert_close(got["acc"], x * 2 if abs(cond) > 1e-6 else x)


def test_branch_in_a_classic_network() -> None:
    def add(b) -> None:
        branch = b.add_branch("choose", "cond")
        _sub(branch.branch.ifBranch).add_activation("relu", "RELU", "x", "y")
        _sub(branch.branch.elseBranch).add_activation("neg", "LINEAR", "x", "y", params=[-1, 0])

    x = rng(3).standard_normal((1, 2, 3, 3)).astype(np.float32)
    spec = build_spec({"x": (2, 3, 3), "cond": (1,)}, ["y"], add)
    for cond in (1.0, 0.0):
        got = run_spec(spec, {"x": x, "cond": np.full((1, 1), cond, np.float32)})
        assert_close(got["y"], np.maximum(x, 0) if cond else -x)


# -- loop ------------------------------------------------------------------------------


def _fixed_loop(b) -> None:
    """acc = x; repeat 5 times: acc = 0.5 * acc + x."""
    b.add_copy("start", "x", "acc")
    loop = b.add_loop("repeat", max_iterations=5)
    body = _sub(loop.loop.bodyNetwork)
    body.add_elementwise("half", ["acc"], "halved", "MULTIPLY", alpha=0.5)
    body.add_elementwise("plus", ["halved", "x"], "next", "ADD")
    body.add_copy("update", "next", "acc")


def test_loop_with_a_fixed_count_accumulates() -> None:
    x = _x(2, 3, seed=4)
    spec = build_spec({"x": (1, 2, 3)}, ["acc"], _fixed_loop, nd=True)
    acc = x.copy()
    for _ in range(5):
        acc = 0.5 * acc + x
    assert_close(run_spec(spec, {"x": x})["acc"], acc)


@pytest.mark.parametrize("count", [0.0, 1.0, 3.7])
def test_loop_count_from_an_input_blob(count: float) -> None:
    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        loop = b.add_loop("repeat", input_name="count", max_iterations=100)
        body = _sub(loop.loop.bodyNetwork)
        body.add_elementwise("plus", ["acc", "x"], "next", "ADD")
        body.add_copy("update", "next", "acc")

    x = _x(4, seed=5)
    spec = build_spec({"x": (1, 4), "count": (1, 1)}, ["acc"], add, nd=True)
    got = run_spec(spec, {"x": x, "count": np.full((1, 1), count, np.float32)})
    assert_close(got["acc"], x * (1 + int(count)))


def _while_loop(b, *, bound: int = 0) -> None:
    """acc = x, n = 0; while max(acc) < 100 (and n < bound): acc = acc * 3; n += 1."""
    b.add_copy("start", "x", "acc")
    _counters(b, "n")
    loop = b.add_loop("grow", condition="go", max_iterations=bound)
    cond = _sub(loop.loop.conditionNetwork)
    cond.add_reduce_max("biggest", "acc", "top", axes=None, keepdims=False, reduce_all=True)
    cond.add_less_than("small", ["top"], "go", alpha=100.0)
    body = _sub(loop.loop.bodyNetwork)
    body.add_elementwise("triple", ["acc"], "tripled", "MULTIPLY", alpha=3.0)
    body.add_copy("update", "tripled", "acc")
    body.add_elementwise("tick", ["n"], "n_next", "ADD", alpha=1.0)
    body.add_copy("count", "n_next", "n")


@pytest.mark.parametrize("bound", [0, 2])
@pytest.mark.parametrize("scale", [1.0, 20.0, 500.0])
def test_loop_with_a_condition_network(bound: int, scale: float) -> None:
    x = (np.abs(_x(3, seed=6)) * np.float32(scale)).astype(np.float32)
    spec = build_spec(
        {"x": (1, 3)}, ["acc", "n", "top"], lambda b: _while_loop(b, bound=bound), nd=True
    )
    got = run_spec(spec, {"x": x})
    acc, n = x.copy(), 0
    while acc.max() < 100 and (bound == 0 or n < bound):
        acc, n = acc * 3, n + 1
    assert_close(got["acc"], acc)
    assert_close(got["n"], np.full((1,), n, np.float32))
    assert_close(got["top"], np.full((1,), acc.max(), np.float32))


def _counting_body(loop) -> Any:
    """A body that starts with i += 1 (i counts the iterations from 1)."""
    body = _sub(loop.loop.bodyNetwork)
    body.add_elementwise("tick", ["i"], "i_next", "ADD", alpha=1.0)
    body.add_copy("count", "i_next", "i")
    return body


def _counters(b, *names: str) -> None:
    """Blobs that start at 0 before a loop (iteration counters)."""
    _const(b, "zero", 0.0)
    for name in names:
        b.add_copy(f"{name}_start", "zero", name)


def _add_i_times_x(body) -> None:
    """The rest of a counting body: acc += i * x."""
    body.add_elementwise("weigh", ["i", "x"], "step", "MULTIPLY")
    body.add_elementwise("plus", ["acc", "step"], "next", "ADD")
    body.add_copy("update", "next", "acc")


def _jump_when(body, name: str, kind: str, cond: str) -> None:
    branch = body.add_branch(name, cond)
    inner = _sub(branch.branch.ifBranch)
    (inner.add_loop_break if kind == "break" else inner.add_loop_continue)(f"{name}_{kind}")


def test_loop_break_inside_a_branch_stops_the_loop() -> None:
    """for 10: i += 1; if i >= 3: break; acc += i * x."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        _counters(b, "i")
        loop = b.add_loop("repeat", max_iterations=10)
        body = _counting_body(loop)
        body.add_greater_than("enough", ["i"], "stop", alpha=3.0, use_greater_than_equal=True)
        _jump_when(body, "check", "break", "stop")
        _add_i_times_x(body)

    x = _x(3, seed=7)
    spec = build_spec({"x": (1, 3)}, ["acc", "i"], add, nd=True)
    got = run_spec(spec, {"x": x})
    acc, i = x.copy(), 0
    for _ in range(10):
        i += 1
        if i >= 3:
            break
        acc = acc + i * x
    assert_close(got["acc"], acc)
    assert_close(got["i"], np.full((1,), i, np.float32))


def test_loop_continue_skips_the_rest_of_the_iteration() -> None:
    """for 6: i += 1; if i is even: continue; acc += i * x."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        _counters(b, "i")
        loop = b.add_loop("repeat", max_iterations=6)
        body = _counting_body(loop)
        body.add_elementwise("halve", ["i"], "half", "MULTIPLY", alpha=0.5)
        body.add_floor("whole", "half", "floored")
        body.add_elementwise("double", ["floored"], "back", "MULTIPLY", alpha=2.0)
        body.add_equal("even", ["back", "i"], "is_even")
        _jump_when(body, "check", "continue", "is_even")
        _add_i_times_x(body)

    x = _x(3, seed=8)
    spec = build_spec({"x": (1, 3)}, ["acc", "i"], add, nd=True)
    got = run_spec(spec, {"x": x})
    acc, i = x.copy(), 0
    for _ in range(6):
        i += 1
        if i % 2 == 0:
            continue
        acc = acc + i * x
    assert_close(got["acc"], acc)
    assert_close(got["i"], np.full((1,), i, np.float32))


def test_break_skips_the_condition_network() -> None:
    """checks += 1 each time the condition network runs: before the loop and after
    each iteration, but not after the iteration that breaks."""

    def add(b) -> None:
        _counters(b, "i", "checks")
        loop = b.add_loop("repeat", condition="go", max_iterations=0)
        cond = _sub(loop.loop.conditionNetwork)
        cond.add_elementwise("tick_checks", ["checks"], "checks_next", "ADD", alpha=1.0)
        cond.add_copy("count_checks", "checks_next", "checks")
        cond.add_less_than("bounded", ["checks"], "go", alpha=100.0)
        body = _counting_body(loop)
        body.add_greater_than("enough", ["i", "limit"], "stop", use_greater_than_equal=True)
        _jump_when(body, "check", "break", "stop")

    spec = build_spec({"limit": (1, 1)}, ["i", "checks"], add, nd=True)
    got = run_spec(spec, {"limit": np.full((1, 1), 4.0, np.float32)})
    i, checks = 0, 1
    while checks < 100:
        i += 1
        if i >= 4:
            break
        checks += 1
    assert_close(got["i"], np.full((1,), i, np.float32))
    assert_close(got["checks"], np.full((1,), checks, np.float32))


def test_jumps_nested_in_branches_and_in_an_inner_loop() -> None:
    """for 10: i += 1; (for 5: j += 1; if j >= 2: break); if i >= 2: (if i >= 4: break);
    if i >= 3: (continue); acc += i * x. The inner break stops the inner loop only."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        _counters(b, "i", "j")
        loop = b.add_loop("outer", max_iterations=10)
        body = _counting_body(loop)
        inner = body.add_loop("inner", max_iterations=5)
        inner_body = _sub(inner.loop.bodyNetwork)
        inner_body.add_elementwise("tick_j", ["j"], "j_next", "ADD", alpha=1.0)
        inner_body.add_copy("count_j", "j_next", "j")
        inner_body.add_greater_than(
            "j_enough", ["j"], "j_stop", alpha=2.0, use_greater_than_equal=True
        )
        _jump_when(inner_body, "j_check", "break", "j_stop")
        body.add_greater_than("past_two", ["i"], "late", alpha=2.0, use_greater_than_equal=True)
        middle = _sub(body.add_branch("late_check", "late").branch.ifBranch)
        middle.add_greater_than("past_four", ["i"], "stop", alpha=4.0, use_greater_than_equal=True)
        _jump_when(middle, "stop_check", "break", "stop")
        body.add_greater_than("past_three", ["i"], "skip", alpha=3.0, use_greater_than_equal=True)
        _jump_when(body, "skip_check", "continue", "skip")
        _add_i_times_x(body)

    x = _x(3, seed=14)
    spec = build_spec({"x": (1, 3)}, ["acc", "i", "j"], add, nd=True)
    got = run_spec(spec, {"x": x})
    acc, i, j = x.copy(), 0, 0
    for _ in range(10):
        i += 1
        for _ in range(5):
            j += 1
            if j >= 2:
                break
        if i >= 2 and i >= 4:
            break
        if i >= 3:
            continue
        acc = acc + i * x
    assert_close(got["acc"], acc)
    assert_close(got["i"], np.full((1,), i, np.float32))
    assert_close(got["j"], np.full((1,), j, np.float32))


def test_a_blob_written_after_a_possible_break_inside_a_branch() -> None:
    """for 10: i += 1; if always: (if i >= 3: break; t = 10 i) else: t = 0; acc += t.
    ``t`` has no value before the loop: when the break runs nothing reads it."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        _counters(b, "i")
        _const(b, "one", 1.0)
        loop = b.add_loop("repeat", max_iterations=10)
        body = _counting_body(loop)
        branch = body.add_branch("always", "one")
        then = _sub(branch.branch.ifBranch)
        then.add_greater_than("enough", ["i"], "stop", alpha=3.0, use_greater_than_equal=True)
        _jump_when(then, "check", "break", "stop")
        then.add_elementwise("tenfold", ["i"], "t", "MULTIPLY", alpha=10.0)
        _sub(branch.branch.elseBranch).add_elementwise("nothing", ["i"], "t", "MULTIPLY", alpha=0.0)
        body.add_elementwise("plus", ["acc", "t"], "next", "ADD")
        body.add_copy("update", "next", "acc")

    x = _x(3, seed=15)
    spec = build_spec({"x": (1, 3)}, ["acc", "i"], add, nd=True)
    got = run_spec(spec, {"x": x})
    acc, i = x.copy(), 0
    for _ in range(10):
        i += 1
        if i >= 3:
            break
        acc = acc + 10 * i
    assert_close(got["acc"], acc)
    assert_close(got["i"], np.full((1,), i, np.float32))


def test_nested_loops_and_a_branch_in_a_body() -> None:
    """for 3: (for 4: acc = acc * 0.9 + x); if sum(acc) > 0: acc = acc - 1."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        outer = b.add_loop("outer", max_iterations=3)
        body = _sub(outer.loop.bodyNetwork)
        inner = body.add_loop("inner", max_iterations=4)
        inner_body = _sub(inner.loop.bodyNetwork)
        inner_body.add_elementwise("decay", ["acc"], "decayed", "MULTIPLY", alpha=0.9)
        inner_body.add_elementwise("plus", ["decayed", "x"], "next", "ADD")
        inner_body.add_copy("update", "next", "acc")
        body.add_reduce_sum("sum", "acc", "total", axes=None, keepdims=False, reduce_all=True)
        body.add_greater_than("positive", ["total"], "cond", alpha=0.0)
        branch = body.add_branch("maybe", "cond")
        sub = _sub(branch.branch.ifBranch)
        sub.add_elementwise("lower", ["acc"], "lowered", "ADD", alpha=-1.0)
        sub.add_copy("update_lowered", "lowered", "acc")

    x = _x(5, seed=9)
    spec = build_spec({"x": (1, 5)}, ["acc"], add, nd=True)
    acc = x.copy()
    for _ in range(3):
        for _ in range(4):
            acc = acc * 0.9 + x
        if acc.sum() > 0:
            acc = acc - 1
    assert_close(run_spec(spec, {"x": x})["acc"], acc)


def test_a_loop_inside_a_branch_and_an_unconditional_break() -> None:
    """if cond: (for 5: acc += x; break) else: (for 3: acc = acc * 2)."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        branch = b.add_branch("choose", "cond")
        once = _sub(branch.branch.ifBranch).add_loop("once", max_iterations=5)
        body = _sub(once.loop.bodyNetwork)
        body.add_elementwise("plus", ["acc", "x"], "next", "ADD")
        body.add_copy("update", "next", "acc")
        body.add_loop_break("stop")
        body.add_elementwise("never", ["acc"], "never_next", "MULTIPLY", alpha=100.0)
        body.add_copy("never_update", "never_next", "acc")
        thrice = _sub(branch.branch.elseBranch).add_loop("thrice", max_iterations=3)
        other = _sub(thrice.loop.bodyNetwork)
        other.add_elementwise("double", ["acc"], "doubled", "MULTIPLY", alpha=2.0)
        other.add_copy("update_doubled", "doubled", "acc")

    x = _x(3, seed=11)
    spec = build_spec({"x": (1, 3), "cond": (1, 1)}, ["acc"], add, nd=True)
    for cond in (1.0, 0.0):
        got = run_spec(spec, {"x": x, "cond": np.full((1, 1), cond, np.float32)})
        assert_close(got["acc"], x + x if cond else x * 8)


def test_a_carried_blob_may_grow_and_a_branch_may_need_static_shapes() -> None:
    """for 3: acc = concat(acc, x); if cond: y = concat(acc, ones) else y = concat(acc, acc)
    (concatenating a constant repeats it over the batch: a static shape inside a branch)."""

    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        loop = b.add_loop("grow", max_iterations=3)
        _sub(loop.loop.bodyNetwork).add_concat_nd("cat", ["acc", "x"], "longer", axis=-1)
        _sub(loop.loop.bodyNetwork).add_copy("update", "longer", "acc")
        branch = b.add_branch("choose", "cond")
        then = _sub(branch.branch.ifBranch)
        then.add_load_constant_nd("ones", "ones", np.ones((1, 2), np.float32), (1, 2))
        then.add_concat_nd("with_ones", ["acc", "ones"], "y", axis=-1)
        _sub(branch.branch.elseBranch).add_concat_nd("twice", ["acc", "acc"], "y", axis=-1)

    x = _x(2, seed=12)
    spec = build_spec({"x": (1, 2), "cond": (1, 1)}, ["y"], add, nd=True)
    acc = np.concatenate([x] * 4, axis=-1)
    for cond in (1.0, 0.0):
        got = run_spec(spec, {"x": x, "cond": np.full((1, 1), cond, np.float32)})
        tail = np.ones((1, 2), np.float32) if cond else acc
        assert_close(got["y"], np.concatenate([acc, tail], axis=-1))


def test_a_batch_runs_one_example_at_a_time() -> None:
    """Through the Predictor: each example of a batch takes its own branch."""
    spec = build_spec({"x": (1, 4)}, ["y", "z"], _sign_branch, nd=True)
    x = rng(10).standard_normal((6, 1, 4)).astype(np.float32)
    x[:3] = np.abs(x[:3])
    x[3:] = -np.abs(x[3:])
    predictions = Predictor(spec, cache=False).predict_tensors({"x": x})
    for example, prediction in zip(x, predictions, strict=True):
        y = 3 * example if example.sum() > 0 else example - 5
        assert_close(prediction.outputs["y"].reshape(y.shape), y)


def test_a_blob_written_twice_in_the_top_network_is_read_in_order() -> None:
    """Sub-networks aside, Core ML runs layers in order: a second write (in place)
    replaces the value for the layers after it."""

    def add(b) -> None:
        b.add_elementwise("first", ["x"], "y", "ADD", alpha=1.0)
        b.add_elementwise("seen", ["y"], "z", "MULTIPLY", alpha=3.0)
        b.add_elementwise("again", ["y"], "y", "MULTIPLY", alpha=2.0)

    x = _x(4, seed=13)
    got = run_spec(build_spec({"x": (1, 4)}, ["y", "z"], add, nd=True), {"x": x})
    assert_close(got["y"], (x + 1) * 2)
    assert_close(got["z"], (x + 1) * 3)


def test_a_prefix_before_a_loop_returns_what_the_loop_reads() -> None:
    """``stop_before`` (the trainer's cut): blobs read only inside a sub-network are
    part of the prefix's outputs too."""

    def add(b) -> None:
        b.add_elementwise("scale", ["x"], "scaled", "MULTIPLY", alpha=2.0)
        b.add_copy("start", "scaled", "acc")
        loop = b.add_loop("repeat", max_iterations=2)
        body = _sub(loop.loop.bodyNetwork)
        body.add_elementwise("plus", ["acc", "scaled"], "next", "ADD")
        body.add_copy("update", "next", "acc")

    spec = build_spec({"x": (1, 3)}, ["acc"], add, nd=True)
    assert default_outputs(spec, stop_before=2) == ["acc", "scaled"]
    x = _x(3, seed=16)
    got = Session(compile_network(spec, stop_before=2)).run({"x": x})
    assert_close(got["scaled"], 2 * x)
    assert_close(got["acc"], 2 * x)
    assert_close(run_spec(spec, {"x": x})["acc"], 6 * x)


def test_a_batch_whose_examples_give_outputs_of_other_shapes_fails_in_one_line() -> None:
    def add(b) -> None:
        b.add_copy("start", "x", "acc")
        loop = b.add_loop("grow", input_name="count")
        _sub(loop.loop.bodyNetwork).add_concat_nd("cat", ["acc", "x"], "longer", axis=-1)
        _sub(loop.loop.bodyNetwork).add_copy("update", "longer", "acc")

    spec = build_spec({"x": (1, 2), "count": (1, 1)}, ["acc"], add, nd=True)
    x = rng(17).standard_normal((2, 1, 2)).astype(np.float32)
    count = np.array([[[1.0]], [[2.0]]], np.float32)
    predictor = Predictor(spec, cache=False)
    (one,) = predictor.predict_tensors({"x": x[1:], "count": count[1:]})
    assert_close(one.outputs["acc"].reshape(1, 6), np.concatenate([x[1]] * 3, axis=-1))
    with pytest.raises(EngineError, match="different shapes") as failed:
        predictor.predict_tensors({"x": x, "count": count})
    assert "\n" not in str(failed.value)


# -- refused ---------------------------------------------------------------------------


def test_a_blob_only_one_branch_makes_is_refused_naming_it() -> None:
    def add(b) -> None:
        branch = b.add_branch("choose", "cond")
        _sub(branch.branch.ifBranch).add_copy("inside", "x", "y")

    spec = build_spec({"x": (1, 3), "cond": (1, 1)}, ["y"], add, nd=True)
    _refusal(spec, "choose", r"'y' is written only when the condition holds")


def _last_step_loop(b, *, count: str | None = None, limit: int = 4) -> None:
    """acc = x; repeat: acc = acc + x; step = 2 * acc (first written in the loop, read
    after it); then out = step - 1."""
    b.add_copy("start", "x", "acc")
    if count is None:
        loop = b.add_loop("repeat", max_iterations=limit)
    else:
        loop = b.add_loop("repeat", input_name=count, max_iterations=limit)
    body = _sub(loop.loop.bodyNetwork)
    body.add_elementwise("plus", ["acc", "x"], "next", "ADD")
    body.add_copy("update", "next", "acc")
    body.add_elementwise("twice", ["next"], "step", "MULTIPLY", alpha=2.0)
    b.add_elementwise("after", ["step"], "out", "ADD", alpha=-1.0)


def test_a_blob_first_written_in_a_loop_keeps_its_last_value_after_it() -> None:
    x = _x(2, 3, seed=30)
    spec = build_spec({"x": (1, 2, 3)}, ["out", "step"], _last_step_loop, nd=True)
    got = run_spec(spec, {"x": x})
    acc = x.copy()
    for _ in range(4):
        acc = acc + x
        step = 2 * acc
    assert_close(got["step"], step)
    assert_close(got["out"], step - 1)


def test_a_blob_first_written_in_a_loop_that_breaks_keeps_the_last_iterations_value() -> None:
    """for 10: i += 1; last = i * x; if i >= 3: break. last is written before the
    break, so the breaking iteration's value is the one read after the loop."""

    def add(b) -> None:
        _counters(b, "i")
        loop = b.add_loop("repeat", max_iterations=10)
        body = _counting_body(loop)
        body.add_elementwise("weigh", ["i", "x"], "last", "MULTIPLY")
        body.add_greater_than("enough", ["i"], "stop", alpha=3.0, use_greater_than_equal=True)
        _jump_when(body, "check", "break", "stop")

    x = _x(3, seed=31)
    spec = build_spec({"x": (1, 3)}, ["last", "i"], add, nd=True)
    got = run_spec(spec, {"x": x})
    assert_close(got["last"], 3 * x)
    assert_close(got["i"], np.full((1,), 3, np.float32))


def test_a_blob_first_written_in_a_loop_that_never_runs_fails_in_one_line() -> None:
    x = _x(2, 3, seed=32)
    spec = build_spec(
        {"x": (1, 2, 3), "n": (1, 1)}, ["out"], lambda b: _last_step_loop(b, count="n"), nd=True
    )
    got = run_spec(spec, {"x": x, "n": np.full((1, 1), 2.0, np.float32)})
    assert_close(got["out"], 2 * (x + 2 * x) - 1)
    with pytest.raises(EngineError, match=r"in layer 'repeat' \(Gather\)") as failed:
        run_spec(spec, {"x": x, "n": np.zeros((1, 1), np.float32)})
    assert "\n" not in str(failed.value)


@pytest.mark.parametrize("kind", ["break", "continue"])
def test_a_jump_outside_a_loop_is_refused(kind: str) -> None:
    def add(b) -> None:
        b.add_copy("start", "x", "y")
        _jump_when(b, "check", kind, "cond")

    spec = build_spec({"x": (1, 3), "cond": (1, 1)}, ["y"], add, nd=True)
    _refusal(spec, f"check_{kind}", "outside the body network of a loop")


def test_a_jump_in_a_condition_network_is_refused() -> None:
    def add(b) -> None:
        b.add_copy("start", "x", "y")
        loop = b.add_loop("repeat", condition="go")
        cond = _sub(loop.loop.conditionNetwork)
        cond.add_copy("go_copy", "flag", "go")
        _jump_when(cond, "check", "break", "flag")
        body = _sub(loop.loop.bodyNetwork)
        body.add_elementwise("plus", ["y"], "next", "ADD", alpha=1.0)
        body.add_copy("update", "next", "y")

    spec = build_spec({"x": (1, 3), "flag": (1, 1)}, ["y"], add, nd=True)
    _refusal(spec, "repeat", "conditionNetwork holds a loopBreak")


def test_a_condition_of_several_values_is_refused() -> None:
    def add(b) -> None:
        branch = b.add_branch("choose", "x")
        _sub(branch.branch.ifBranch).add_copy("inside", "x", "y")
        _sub(branch.branch.elseBranch).add_copy("other", "x", "y")

    spec = build_spec({"x": (1, 3)}, ["y"], add, nd=True)
    with pytest.raises(InvalidModelError, match=r"'choose'.*blob 'x' holds 3 values") as refused:
        compile_network(spec)
    assert "\n" not in str(refused.value)


def test_an_unknown_layer_inside_a_sub_network_is_refused_before_compiling() -> None:
    def add(b) -> None:
        b.add_copy("start", "x", "y")
        loop = b.add_loop("repeat", max_iterations=2)
        body = _sub(loop.loop.bodyNetwork)
        body.add_custom("mystery", ["y"], ["y2"], custom_proto_spec=None)

    spec = build_spec({"x": (1, 3)}, ["y"], add, nd=True)
    _refusal(spec, "mystery", "custom")


def test_control_layers_are_supported() -> None:
    assert {"branch", "loop", "loopBreak", "loopContinue"} <= set(supported_layer_types())
