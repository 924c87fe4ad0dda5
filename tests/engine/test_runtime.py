"""The onnxruntime session wrapper and the compiled-graph cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session
from mlupdated.engine.threads import Threads
from mlupdated.errors import EngineError

from .helpers import build_spec


def _spec():
    def add(b):
        b.add_activation("relu", "RELU", "x", "h")
        b.add_softmax("sm", "h", "y")

    return build_spec({"x": (4, 2, 2)}, ["y"], add)


def test_run_errors_become_engine_errors(capfd: pytest.CaptureFixture[str]) -> None:
    session = Session(compile_network(_spec()))
    with pytest.raises(EngineError, match="missing input"):
        session.run({})
    with pytest.raises(EngineError, match="onnxruntime") as wrong:
        session.run({"x": np.zeros((1, 3, 2, 2), np.float32)})  # wrong channel count
    assert "\n" not in str(wrong.value)  # onnxruntime's message spans lines
    # A failure inside a kernel: the error is ours to report, onnxruntime's log is quiet.
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["v", "shape"], ["w"])],
        "reshape",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [5])],
        initializer=[numpy_helper.from_array(np.array([5], np.int64), name="shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(EngineError, match="onnxruntime"):
        Session(model).run({"v": np.zeros(3, np.float32)})
    assert capfd.readouterr().err == ""


def test_unloadable_graph_is_an_engine_error() -> None:
    with pytest.raises(EngineError):
        Session(b"definitely not a graph")


def test_running_a_graph_writes_nothing_outside_our_cache(tmp_path: Path) -> None:
    # onnxruntime's telemetry client writes a device id under the user's cache and a
    # session file in the temp folder on import, unless mlupdated turns it off first.
    home, cache, temp = (tmp_path / name for name in ("home", "xdg-cache", "tmp"))
    for folder in (home, cache, temp):
        folder.mkdir()
    script = (
        "import numpy as np\n"
        "from mlupdated.engine.runtime import Session\n"
        "from onnx import TensorProto, helper\n"
        "x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])\n"
        "y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])\n"
        "graph = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y])\n"
        "model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])\n"
        "print(Session(model).run({'x': np.ones(1, np.float32)})['y'])\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),
        "TMPDIR": str(temp),
        "MLUPDATED_CACHE_DIR": str(tmp_path / "ours"),
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[1.]" in done.stdout
    written = [p for folder in (home, cache, temp) for p in folder.rglob("*")]
    assert written == []


def _matmul_graph() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 512])],
        initializer=[numpy_helper.from_array(weights, name="w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _cpu_after_run(run: object, x: np.ndarray) -> float:
    """CPU seconds this process burns in the 0.3 s after one run, while it only sleeps."""
    for _ in range(3):
        run(x)  # type: ignore[operator]
    run(x)  # type: ignore[operator]
    before = time.process_time()
    time.sleep(0.3)
    return time.process_time() - before


def test_spinning_threads_stop_when_the_run_returns() -> None:
    """A spinning session spins between operators only: once a run is over, its idle
    threads sleep instead of taking a core from what comes next."""
    import onnxruntime as ort

    data = _matmul_graph()
    x = np.random.default_rng(1).random((256, 512), dtype=np.float32)
    ours = Session(data, threads=Threads(spinning=True))
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    plain = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    if (os.cpu_count() or 1) > 1:
        # The measurement sees spinning: a plain spinning session keeps burning CPU.
        assert _cpu_after_run(lambda v: plain.run(None, {"x": v}), x) > 0.003
    assert _cpu_after_run(lambda v: ours.run({"x": v}), x) < 0.003
    assert np.allclose(ours.run({"x": x})["y"], plain.run(None, {"x": x})[0])
