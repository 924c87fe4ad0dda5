"""Bad models given to predict / inspect / init, NaN weights, and configs of the wrong
type: one line on stderr naming the file, exit 2, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import MAX_MODEL_BYTES, load_spec
from mlupdated.engine.predictor import NON_FINITE_REASON
from mlupdated.service.update.gate import nonfinite_layers
from PIL import Image

from tests.daemon.conftest import cli, toml_text
from tests.helpers.updatable_specs import layer_by_name
from tests.reliability.harness import make_workspace, write_figures

pytestmark = pytest.mark.slow


def _model_variants(good: Path, tmp: Path) -> dict[str, Path]:
    data = good.read_bytes()
    spec = load_spec(good)
    out: dict[str, Path] = {}

    def put(name: str, payload: bytes) -> None:
        out[name] = tmp / f"{name}.mlmodel"
        out[name].write_bytes(payload)

    put("empty", b"")
    put("garbage", np.random.default_rng(0).integers(0, 256, 3000).astype(np.uint8).tobytes())
    put("truncated", data[: len(data) // 3])
    put("text", b"this is not a model\n")
    program = Model_pb2.Model()
    program.specificationVersion = 7
    program.description.CopyFrom(spec.description)
    program.mlProgram.SetInParent()
    put("ml-program", program.SerializeToString())
    future = Model_pb2.Model()
    future.CopyFrom(spec)
    future.specificationVersion = 99
    put("future-version", future.SerializeToString())
    out["directory"] = tmp / "folder.mlmodel"
    out["directory"].mkdir()
    out["missing"] = tmp / "missing.mlmodel"
    return out


def _one_line_error(done, name: str) -> None:
    assert done.returncode == 2, (name, done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, (name, done.stderr)
    assert lines[0].startswith("mlupdated: error:"), (name, lines)
    assert "Traceback" not in done.stderr


def test_broken_models_are_refused_in_one_line(tmp_path, small_model) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (200, 20, 20)).save(photo)
    variants = _model_variants(small_model, tmp_path)
    tried = 0
    for name, model in variants.items():
        _one_line_error(cli("predict", "--model", str(model), "--json", str(photo)), name)
        _one_line_error(cli("inspect", "--model", str(model)), name)
        target = tmp_path / f"ws-{name}"
        _one_line_error(cli("init", str(target), "--model", str(model)), name)
        # A refused init leaves no half-made workspace behind.
        assert not target.exists() or not any(target.iterdir()), name
        tried += 3
    write_figures("bad_models", {"models": len(variants), "commands_tried": tried})


def test_huge_sparse_model_is_refused_without_reading_it(tmp_path, small_model) -> None:
    huge = tmp_path / "huge.mlmodel"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk, no reading
    commands = (
        ("predict", "--model", str(huge), str(huge)),
        ("inspect", "--model", str(huge)),
        ("init", str(tmp_path / "ws"), "--model", str(huge)),
    )
    for command in commands:
        done = cli(*command)
        _one_line_error(done, command[0])
        assert "larger than" in done.stderr


def test_nan_weights_never_pass_the_gate_and_predict_does_not_crash(tmp_path, small_model) -> None:
    spec = load_spec(small_model)
    assert nonfinite_layers(spec) == []
    layer = layer_by_name(spec, "dense_6")
    weights = np.array(layer.innerProduct.weights.floatValue, dtype=np.float32)
    weights[0] = np.nan
    layer.innerProduct.weights.floatValue[:] = weights.tolist()
    assert nonfinite_layers(spec) == ["dense_6"]
    nan_model = tmp_path / "nan.mlmodel"
    nan_model.write_bytes(spec.SerializeToString())
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (20, 20, 200)).save(photo)
    done = cli("predict", "--model", str(nan_model), "--json", str(photo))
    # No made-up label over NaN probabilities: an error line (strict JSON) and exit 1.
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stdout.splitlines()
    answer = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert answer == {"path": str(photo), "error": NON_FINITE_REASON}


BAD_CONFIGS = {
    "string for an integer": {"update": {"min_batch": "ten"}},
    "negative batch": {"update": {"min_batch": -1}},
    "unknown key": {"update": {"min_bacth": 3}},
    "unknown policy": {"update": {"policy": "sometimes"}},
    "list for a float": {"intake": {"stability_seconds": [1, 2]}},
    "boolean for an integer": {"store": {"keep_versions": True}},
}


def test_wrong_config_stops_the_daemon_with_one_line(tmp_path, small_model) -> None:
    ws = make_workspace(tmp_path / "ws", small_model)
    tried = 0
    for name, sections in [*BAD_CONFIGS.items(), ("not toml", None)]:
        text = "[update\nmin_batch = 3\n" if sections is None else toml_text(sections)
        ws.root.joinpath("config.toml").write_text(text)
        started = time.monotonic()
        done = cli("run", "--workspace", str(ws.root), timeout=60)
        assert time.monotonic() - started < 60
        _one_line_error(done, name)
        assert "config.toml" in done.stderr, (name, done.stderr)
        key = next(iter(next(iter(sections.values())))) if sections else None
        if key:
            assert key in done.stderr, (name, done.stderr)
        tried += 1
    write_figures("bad_configs", {"configs": tried})
