"""The onnxruntime session wrapper and the compiled-graph cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlupdated.engine import runtime
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session, cache_key, load_session
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
    with pytest.raises(EngineError, match="onnxruntime"):
        session.run({"x": np.zeros((1, 3, 2, 2), np.float32)})  # wrong channel count
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


def test_cache_key_depends_on_everything_that_shapes_the_graph() -> None:
    spec = _spec()
    base = cache_key(spec, stop_before=None, outputs=None)
    assert base == cache_key(_spec(), stop_before=None, outputs=None)
    assert base != cache_key(spec, stop_before=1, outputs=None)
    assert base != cache_key(spec, stop_before=None, outputs=["h"])
    changed = _spec()
    changed.neuralNetwork.layers[0].name = "renamed"
    assert base != cache_key(changed, stop_before=None, outputs=None)


def test_load_session_caches_per_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(tmp_path))
    spec = _spec()
    start = runtime.compile_count
    load_session(spec)
    load_session(spec, stop_before=1)
    load_session(spec)
    load_session(spec, stop_before=1)
    assert runtime.compile_count == start + 2
    assert len(list((tmp_path / "graphs").glob("*.onnx"))) == 2
    load_session(spec, cache=False)
    assert runtime.compile_count == start + 3
    x = np.random.default_rng(0).standard_normal((2, 4, 2, 2)).astype(np.float32)
    features = load_session(spec, stop_before=1).run({"x": x})
    np.testing.assert_allclose(features["h"], np.maximum(x, 0))


def test_a_cache_directory_that_cannot_be_made_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(blocker / "cache"))
    start = runtime.compile_count
    session = load_session(_spec())
    assert runtime.compile_count == start + 1
    x = np.ones((1, 4, 2, 2), np.float32)
    np.testing.assert_allclose(session.run({"x": x})["y"].sum(axis=1), 1.0, rtol=1e-6)


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


def test_a_cached_graph_runs_without_importing_onnx(tmp_path: Path) -> None:
    # The onnx package takes a noticeable part of a second to import; a predict whose
    # graph is in the cache must not pay for it (the first one compiles and may).
    spec_path = tmp_path / "model.mlmodel"
    spec_path.write_bytes(_spec().SerializeToString())
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from mlupdated.coreml.spec import load_spec\n"
        "from mlupdated.engine.predictor import Predictor\n"
        f"predictor = Predictor(load_spec({str(spec_path)!r}))\n"
        "predictor.predict_tensors({'x': np.ones((1, 4, 2, 2), np.float32)})\n"
        "print('onnx' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "MLUPDATED_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = str(Path(runtime.__file__).resolve().parents[2])
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert [done.stdout.split()[-1] for done in runs] == ["True", "False"]


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
