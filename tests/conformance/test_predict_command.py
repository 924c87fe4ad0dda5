"""``mlupdated predict`` end to end, refusal of unsupported layers at load, and the
compiled-graph cache."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mlupdated.engine import graph_cache
from mlupdated.engine.predictor import Prediction, PredictionFailure, Predictor
from mlupdated.engine.registry import supported_layer_types
from mlupdated.errors import UnsupportedLayerError

from . import architectures as arch
from .common import convert

LABELS = ("Cat", "Dog", "Bird")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(11)
    model = arch.mobilenet_v2(len(LABELS)).eval()
    spec = convert(model, size=40, color="RGB", labels=LABELS)
    path = tmp_path_factory.mktemp("model") / "classifier.mlmodel"
    path.write_bytes(spec.SerializeToString())
    return path


def _predict_cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )


def test_json_reports_bad_image_and_predicts_the_others(
    model_path: Path, photos: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos[1].read_bytes()[:200])  # a truncated JPEG
    images = [photos[0], corrupt, photos[2]]
    proc = _predict_cli("--model", model_path, "--json", *images)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""  # no library warnings
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in images]
    assert set(lines[1]) == {"path", "error"} and lines[1]["error"]
    expected = Predictor.from_path(model_path).predict_paths([photos[0], photos[2]])
    for line, want in zip([lines[0], lines[2]], expected, strict=True):
        assert set(line) == {"path", "label", "probabilities"}
        assert line["label"] == want.label
        assert set(line["probabilities"]) == set(LABELS)
        for label, p in want.probabilities.items():
            assert abs(line["probabilities"][label] - p) <= 1e-6


def test_text_lines_and_exit_zero(model_path: Path, photos: list[Path]) -> None:
    proc = _predict_cli("--model", model_path, *photos[:2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    expected = Predictor.from_path(model_path).predict_paths(photos[:2])
    want = [f"{r.path}: {r.label} ({r.probabilities[r.label]:.4f})" for r in expected]
    assert proc.stdout.splitlines() == want


def _spec_with_custom_layer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder
        from coremltools.proto import NeuralNetwork_pb2

        b = NeuralNetworkBuilder([("x", datatypes.Array(3, 8, 8))], [("y", None)])
        b.add_activation("relu", "RELU", "x", "r")
        custom = NeuralNetwork_pb2.CustomLayerParams()
        custom.className = "MyMagicLayer"
        b.add_custom("magic", ["r"], ["y"], custom_proto_spec=custom)
    return b.spec


def test_unsupported_layer_is_refused_at_load(tmp_path: Path) -> None:
    spec = _spec_with_custom_layer()
    assert "custom" not in supported_layer_types()
    path = tmp_path / "custom.mlmodel"
    path.write_bytes(spec.SerializeToString())
    with pytest.raises(UnsupportedLayerError) as info:
        Predictor.from_path(path, cache=False)
    err = info.value
    assert err.layer == "magic" and err.layer_type == "custom"
    message = str(err)
    assert str(path) in message and "'magic'" in message and "'custom'" in message
    assert "convolution" in message  # the supported types are listed
    # The CLI prints that one line and exits 2, without running anything.
    proc = _predict_cli("--model", path, path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "'magic'" in proc.stderr


def test_graph_cache_is_used_on_second_load(
    model_path: Path, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(tmp_path / "cache"))
    start = graph_cache.compile_count
    first = Predictor.from_path(model_path)
    assert graph_cache.compile_count == start + 1
    second = Predictor.from_path(model_path)
    assert graph_cache.compile_count == start + 1  # taken from the cache
    a, b = first.predict_paths(photos[:2]), second.predict_paths(photos[:2])
    assert [x.probabilities for x in a] == [x.probabilities for x in b]

    # Damaged cache entries (the graph and onnxruntime's optimized form of it) are
    # ignored and rewritten.
    entries = list((tmp_path / "cache" / "graphs").glob("*.onnx"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_bytes(b"not an onnx graph")
    third = Predictor.from_path(model_path)
    assert graph_cache.compile_count == start + 2
    assert all(entry.read_bytes() != b"not an onnx graph" for entry in entries)
    assert [x.probabilities for x in third.predict_paths(photos[:2])] == [
        x.probabilities for x in a
    ]
    Predictor.from_path(model_path)
    assert graph_cache.compile_count == start + 2


def test_predict_paths_keeps_order_across_batches(model_path: Path, photos: list[Path]) -> None:
    predictor = Predictor.from_path(model_path)
    missing = photos[0].parent / "does-not-exist.jpg"
    paths = [*photos, missing, *photos[:3]]
    results = predictor.predict_paths(paths, batch_size=4)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert isinstance(results[len(photos)], PredictionFailure)
    good = [r for r in results if isinstance(r, Prediction)]
    assert len(good) == len(paths) - 1
    for again, first in zip(good[len(photos) :], good[:3], strict=True):
        np.testing.assert_allclose(
            [again.probabilities[k] for k in LABELS],
            [first.probabilities[k] for k in LABELS],
            atol=1e-6,
        )


def test_missing_model_is_one_line_and_exit_two(tmp_path: Path, photos: list[Path]) -> None:
    proc = _predict_cli("--model", tmp_path / "absent.mlmodel", photos[0])
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "absent.mlmodel" in line


def test_resize_option_reaches_the_image_pipeline(
    model_path: Path, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlupdated.cli import main
    from PIL import Image

    # A wide strip of a photo: the three resize modes see different pixels.
    with Image.open(photos[0]) as img:
        wide = img.convert("RGB").resize((120, 40))
    path = tmp_path / "wide.png"
    wide.save(path)
    predictor = Predictor.from_path(model_path)
    seen = {}
    for mode in ("scaleFill", "centerCrop", "scaleFit"):
        assert (
            main(["predict", "--model", str(model_path), "--json", "--resize", mode, str(path)])
            == 0
        )
        (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
        (want,) = predictor.predict_paths([path], resize=mode)
        for label, p in want.probabilities.items():
            assert abs(line["probabilities"][label] - p) <= 1e-6
        seen[mode] = np.array([line["probabilities"][label] for label in LABELS])
    assert main(["predict", "--model", str(model_path), "--json", str(path)]) == 0
    default = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([default["probabilities"][k] for k in LABELS], seen["scaleFill"])
    # The same pixels give the same numbers bit for bit; other pixels do not.
    assert not np.array_equal(seen["scaleFill"], seen["centerCrop"])
    assert not np.array_equal(seen["scaleFill"], seen["scaleFit"])


def test_unknown_resize_mode_is_a_usage_error(
    model_path: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from mlupdated.cli import main

    code = main(["predict", "--model", str(model_path), "--resize", "stretch", str(photos[0])])
    assert code == 2
    assert "stretch" in capsys.readouterr().err
