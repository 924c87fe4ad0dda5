"""``mlupdated update`` as a user runs it: a real process on temporary folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.cli import main
from mlupdated.coreml.spec import load_spec, save_spec
from mlupdated.train.cache import FeatureCache
from mlupdated.train.data import examples_from_folder
from mlupdated.train.task import run_update
from PIL import Image

IMAGES_PER_LABEL = 5


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLUPDATED_CACHE_DIR=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", "update", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def run_main(capsys, monkeypatch, *args: str, cache: Path) -> subprocess.CompletedProcess:
    """The same command in this process (the CLI's ``main``), for the cheaper cases."""
    monkeypatch.setenv("MLUPDATED_CACHE_DIR", str(cache))
    code = main(["update", *args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def update_in_process(capsys, monkeypatch, workspace, out: Path, *extra: str):
    """``update`` on the workspace's model and data, writing ``out``, in this process."""
    tmp, model, data = workspace
    args = ("--model", str(model), "--data", str(data), "--out", str(out), *extra)
    return run_main(capsys, monkeypatch, *args, cache=tmp / "cache")


@pytest.fixture
def workspace(tmp_path):
    spec = build_updatable_spec(input_shape=(3, 16, 16), learning_rate=0.05)
    model = tmp_path / "model.mlmodel"
    save_spec(spec, model)
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label in ("Cat", "Dog"):
        (data / label).mkdir(parents=True)
        for i in range(IMAGES_PER_LABEL):
            pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / label / f"img{i}.png")
    return tmp_path, model, data


def test_json_events_match_the_python_api(workspace):
    tmp, model, data = workspace
    out = tmp / "out.mlmodel"
    proc = run_cli(
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--json",
        "--epochs",
        "2",
        cache=tmp / "cache",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"event": "trainingBegin"}
    assert lines[-1] == {
        "event": "completed",
        "out": str(out),
        "examples": 10,
        "skipped": 0,
        "rehearsal": 0,
    }
    batches = [e for e in lines if e["event"] == "miniBatchEnd"]
    assert [(e["epochIndex"], e["miniBatchIndex"]) for e in batches] == [
        (epoch, i) for epoch in range(2) for i in range(3)
    ]
    expected = run_update(
        load_spec(model),
        examples_from_folder(data, ["Cat", "Dog"]),
        overrides={"epochs": 2},
        cache=FeatureCache(tmp / "other-cache"),
    )
    ours = [e.loss_value for e in expected.events if e.event == "miniBatchEnd"]
    np.testing.assert_allclose([e["lossValue"] for e in batches], ours, rtol=1e-6)
    assert load_spec(out) == expected.spec


def test_summary_line_without_json(workspace, capsys, monkeypatch):
    tmp, model, data = workspace
    out = tmp / "out.mlmodel"
    proc = update_in_process(capsys, monkeypatch, workspace, out)
    assert proc.returncode == 0, proc.stderr
    assert "10 examples (0 skipped)" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 1
    assert out.is_file()


def test_unknown_label_folder_exits_2_naming_it(workspace, capsys, monkeypatch):
    tmp, model, data = workspace
    (data / "Horse").mkdir()
    proc = update_in_process(capsys, monkeypatch, workspace, tmp / "o.mlmodel")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Horse" in lines[0] and "Cat, Dog" in lines[0]
    assert not (tmp / "o.mlmodel").exists()


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--learning-rate", "5", "learning rate 5.0 outside the model's allowed range"),
        ("--batch-size", "3", "mini-batch size 3 not in the model's allowed set"),
        ("--epochs", "4", "epochs 4 not in the model's allowed set"),
    ],
)
def test_override_outside_the_range_exits_2(workspace, capsys, monkeypatch, option, value, message):
    tmp, model, data = workspace
    proc = update_in_process(capsys, monkeypatch, workspace, tmp / "o.mlmodel", option, value)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp / "o.mlmodel").exists()


def test_corrupt_image_is_reported_and_skipped(workspace):
    tmp, model, data = workspace
    bad = data / "Dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp / "out.mlmodel"
    proc = run_cli(
        "--model", str(model), "--data", str(data), "--out", str(out), "--json", cache=tmp / "cache"
    )
    assert proc.returncode == 0, proc.stderr
    reported = [line for line in proc.stderr.splitlines() if "broken.jpg" in line]
    assert len(reported) == 1 and reported[0].startswith(f"mlupdated: skipped {bad}: ")
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["examples"] == 10 and final["skipped"] == 1
    assert out.is_file()


def test_progress_bar_redraws_one_line_per_mini_batch():
    import io

    from mlupdated.commands.update import _ProgressBar
    from mlupdated.train.task import UpdateEvent

    stream = io.StringIO()
    bar = _ProgressBar(stream, total=4)
    bar(UpdateEvent("trainingBegin"))
    for i in range(4):
        bar(UpdateEvent("miniBatchEnd", i // 2, i % 2, 0.5 - i / 10))
    bar(UpdateEvent("epochEnd", 1, None, 0.3))
    bar.close()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 4
    assert frames[0].startswith("[" + "#" * 7 + ".")
    assert frames[-1].startswith("[" + "#" * 30 + "]") and "loss 0.2000" in frames[-1]
    assert text.endswith("\n") and text.count("\n") == 1


def test_not_updatable_model_exits_2_with_the_rule(workspace, capsys, monkeypatch):
    tmp, model, data = workspace
    spec = load_spec(model)
    spec.isUpdatable = False
    save_spec(spec, model)
    (data / "Horse").mkdir()  # the model is refused first, before the data is looked at
    proc = update_in_process(capsys, monkeypatch, workspace, tmp / "o.mlmodel")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not updatable" in lines[0] and str(model) in lines[0]
    assert not (tmp / "o.mlmodel").exists()


def test_resize_option_is_used_for_the_training_images(workspace, capsys, monkeypatch):
    tmp, model, data = workspace
    outs = {}
    for mode in ("scaleFill", "centerCrop", "scaleFit"):
        outs[mode] = tmp / f"{mode}.mlmodel"
        proc = update_in_process(capsys, monkeypatch, workspace, outs[mode], "--resize", mode)
        assert proc.returncode == 0, proc.stderr
        expected = run_update(
            load_spec(model),
            examples_from_folder(data, ["Cat", "Dog"]),
            resize=mode,
            cache=FeatureCache(tmp / f"api-cache-{mode}"),
        )
        assert load_spec(outs[mode]) == expected.spec
    default = tmp / "default.mlmodel"
    assert update_in_process(capsys, monkeypatch, workspace, default).returncode == 0
    assert load_spec(default) == load_spec(outs["scaleFill"])
    assert load_spec(outs["centerCrop"]) != load_spec(outs["scaleFill"])
    assert load_spec(outs["scaleFit"]) != load_spec(outs["scaleFill"])


def test_unknown_resize_mode_is_a_usage_error(workspace, capsys, monkeypatch):
    tmp, _, _ = workspace
    proc = update_in_process(capsys, monkeypatch, workspace, tmp / "o.mlmodel", "--resize", "x")
    assert proc.returncode == 2 and "--resize" in proc.stderr
    assert not (tmp / "o.mlmodel").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_in_the_data_folder_is_skipped_with_one_line(workspace, capsys, monkeypatch):
    tmp, model, data = workspace
    fifo = data / "Cat" / "pipe.png"
    os.mkfifo(fifo)
    proc = update_in_process(capsys, monkeypatch, workspace, tmp / "out.mlmodel")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [f"mlupdated: skipped {fifo}: not a regular file (a FIFO)"]
    assert "10 examples (1 skipped)" in proc.stdout
