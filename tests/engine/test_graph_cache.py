"""The graph cache: compiled graphs keyed by what decides them, onnxruntime's
optimized form of each kept for this kind of machine, and the bound on the cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from mlupdated.engine import graph_cache, graph_files
from mlupdated.engine.graph_cache import cache_key, load_session
from mlupdated.engine.predictor import Predictor
from mlupdated.fsutil import TEMP_PREFIX

from .helpers import build_spec, rng


def _spec():
    def add(b):
        b.add_activation("relu", "RELU", "x", "h")
        b.add_softmax("sm", "h", "y")

    return build_spec({"x": (4, 2, 2)}, ["y"], add)


def _conv_spec(seed: int = 0):
    """A convolution then a ReLU: onnxruntime fuses the two when it optimizes. Returns
    the spec and the weights as [out, in, height, width]."""
    # The builder takes [height, width, in, out].
    weights = rng(seed).standard_normal((3, 3, 3, 6)).astype(np.float32)

    def add(b):
        b.add_convolution(
            "conv", 3, 6, 3, 3, 1, 1, "same", 1, weights, None, False,
            input_name="x", output_name="c",
        )  # fmt: skip
        b.add_activation("relu", "RELU", "c", "y")

    return build_spec({"x": (3, 8, 8)}, ["y"], add), weights.transpose(3, 2, 0, 1)


def _graphs(directory: Path) -> tuple[list[Path], list[Path]]:
    """The compiled graphs and the optimized ones in the cache folder."""
    files = sorted(directory.glob("*.onnx"))
    optimized = [p for p in files if p.name.endswith(graph_files.OPTIMIZED_SUFFIX)]
    return [p for p in files if p not in optimized], optimized


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / graph_cache.CACHE_SUBDIR


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
    start = graph_cache.compile_count
    load_session(spec)
    load_session(spec, stop_before=1)
    load_session(spec)
    load_session(spec, stop_before=1)
    assert graph_cache.compile_count == start + 2
    assert len(_graphs(tmp_path / "graphs")[0]) == 2
    load_session(spec, cache=False)
    assert graph_cache.compile_count == start + 3
    x = np.random.default_rng(0).standard_normal((2, 4, 2, 2)).astype(np.float32)
    features = load_session(spec, stop_before=1).run({"x": x})
    np.testing.assert_allclose(features["h"], np.maximum(x, 0))


def test_a_cache_directory_that_cannot_be_made_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(blocker / "cache"))
    start = graph_cache.compile_count
    session = load_session(_spec())
    assert graph_cache.compile_count == start + 1
    x = np.ones((1, 4, 2, 2), np.float32)
    np.testing.assert_allclose(session.run({"x": x})["y"].sum(axis=1), 1.0, rtol=1e-6)


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
    env["PYTHONPATH"] = str(Path(graph_cache.__file__).resolve().parents[2])
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
    assert [done.stdout.split()[-1] for done in runs] == ["True", "False"]


def test_a_model_file_keys_its_graph_by_its_bytes(cache: Path, tmp_path: Path) -> None:
    spec, _ = _conv_spec()
    path = tmp_path / "model.mlmodel"
    path.write_bytes(spec.SerializeToString())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    start = graph_cache.compile_count
    first = Predictor.from_path(path)
    assert graph_cache.compile_count == start + 1
    key = cache_key(spec, stop_before=None, outputs=None, source=digest)
    assert key != cache_key(spec, stop_before=None, outputs=None)
    assert [p.name for p in _graphs(cache)[0]] == [f"{key}.onnx"]
    Predictor.from_path(path)
    assert graph_cache.compile_count == start + 1
    # The file changes: its graph is compiled anew, never the old one reused.
    changed, weights = _conv_spec(seed=1)
    path.write_bytes(changed.SerializeToString())
    second = Predictor.from_path(path)
    assert graph_cache.compile_count == start + 2
    x = rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before = first.predict_features({"x": x})[0].outputs["y"]
    after = second.predict_features({"x": x})[0].outputs["y"]
    want = np.maximum(_conv2d_same(x[0], weights), 0)
    np.testing.assert_allclose(after.reshape(want.shape), want, atol=1e-4)
    assert not np.allclose(before, after)


def _conv2d_same(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A 3×3 convolution with one pixel of zero padding, in NumPy."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    out = np.zeros((weights.shape[0], h, w), np.float64)
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy : dy + h, dx : dx + w]
            out += np.einsum("oc,chw->ohw", weights[:, :, dy, dx], window)
    return out.astype(np.float32)


def test_the_optimized_graph_is_kept_and_loaded_as_it_is(cache: Path) -> None:
    spec, weights = _conv_spec()
    x = rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    start = graph_cache.compile_count
    want = load_session(spec).run({"x": x})["y"]
    (graph,), (optimized,) = _graphs(cache)
    assert optimized.name.startswith(graph.stem + ".")
    # It is onnxruntime's optimized form: the ReLU is fused into the convolution.
    kept = onnx.load_model_from_string(optimized.read_bytes())
    assert "Relu" not in [node.op_type for node in kept.graph.node]
    # The next load takes it as it is: it runs even with the plain graph spoilt.
    graph.write_bytes(b"spoilt")
    np.testing.assert_array_equal(load_session(spec).run({"x": x})["y"], want)
    assert graph_cache.compile_count == start + 1
    np.testing.assert_allclose(
        want, np.maximum(np.stack([_conv2d_same(v, weights) for v in x]), 0), atol=1e-4
    )


def test_a_damaged_optimized_graph_is_optimized_again(cache: Path) -> None:
    spec, _ = _conv_spec()
    x = rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = load_session(spec).run({"x": x})["y"]
    _, (optimized,) = _graphs(cache)
    good = optimized.read_bytes()
    optimized.write_bytes(good[: len(good) // 2])
    start = graph_cache.compile_count
    np.testing.assert_array_equal(load_session(spec).run({"x": x})["y"], want)
    assert graph_cache.compile_count == start
    assert onnx.load_model_from_string(optimized.read_bytes()) is not None


def test_each_kind_of_machine_keeps_its_own_optimized_graph(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = _conv_spec()
    load_session(spec)
    monkeypatch.setattr(graph_files, "machine_tag", lambda: "another-machine")
    load_session(spec)
    graphs, optimized = _graphs(cache)
    assert len(graphs) == 1
    assert len(optimized) == 2
    assert any(".another-machine." in p.name for p in optimized)


def test_an_optimized_graph_that_cannot_be_written_costs_only_time(cache: Path) -> None:
    spec, _ = _conv_spec()
    load_session(spec)
    (graph,), (optimized,) = _graphs(cache)
    optimized.unlink()
    # Something in the way of the file onnxruntime writes: the load goes on without it.
    graph_files.temporary_path(optimized).mkdir()
    x = rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert load_session(spec).run({"x": x})["y"].shape == (1, 6, 8, 8)
    assert not optimized.exists()


def _aged(path: Path, size: int, age_s: float) -> Path:
    path.write_bytes(b"g" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_the_cache_keeps_the_most_recently_used_within_its_bound(tmp_path: Path) -> None:
    old = [_aged(tmp_path / f"old{i}.onnx", 100, 1000 + i) for i in range(3)]
    new = [_aged(tmp_path / f"new{i}.onnx", 100, 10 + i) for i in range(3)]
    stale = _aged(tmp_path / f"{TEMP_PREFIX}1-x.onnx", 10, graph_files.STALE_TEMP_S + 60)
    fresh = _aged(tmp_path / f"{TEMP_PREFIX}2-x.onnx", 10, 1)
    other = _aged(tmp_path / "notes.txt", 10_000, 5000)
    removed = graph_files.prune(tmp_path, budget=350, keep=2)
    assert sorted(removed) == sorted([*old, stale])
    assert all(p.exists() for p in (*new, fresh, other))
    # However small the bound, the most recently used stay.
    graph_files.prune(tmp_path, budget=0, keep=2)
    left = sorted(p.name for p in tmp_path.glob("*.onnx") if p != fresh)
    assert left == ["new0.onnx", "new1.onnx"]


def test_a_graph_used_again_counts_as_recent(cache: Path) -> None:
    spec, _ = _conv_spec()
    load_session(spec)
    graph, optimized = (paths[0] for paths in _graphs(cache))
    for path in (graph, optimized):
        os.utime(path, (1, 1))
    load_session(spec)
    assert graph.stat().st_mtime > 1
    assert optimized.stat().st_mtime > 1


def test_the_onnx_version_in_the_key_is_the_installed_one() -> None:
    from importlib import metadata

    graph_cache._onnx_version.cache_clear()
    assert graph_cache._onnx_version() == metadata.version("onnx")
