"""The onnxruntime session wrapper and the compiled-graph cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlupdated.engine import runtime
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session, cache_key, load_session
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


@pytest.mark.parametrize(
    ("load", "cpus", "spins"), [(0.2, 2, True), (0.99, 2, True), (1.0, 2, False), (3.5, 8, True)]
)
def test_one_shot_runs_spin_only_with_cores_to_spare(
    monkeypatch: pytest.MonkeyPatch, load: float, cpus: int, spins: bool
) -> None:
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: cpus)
    assert runtime.spinning_pays() is spins


def test_no_load_average_means_no_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(runtime.os, "getloadavg", unavailable)
    assert runtime.spinning_pays() is False
