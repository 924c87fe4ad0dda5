"""Model descriptions and ``mlupdated inspect``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.commands.inspect import inspect_model as run_inspect_command
from mlupdated.coreml.describe import describe, format_description
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import save_spec


@pytest.fixture(scope="module")
def seed_spec():
    spec = build_updatable_spec(seed=11)
    spec.description.metadata.author = "Test Author"
    spec.description.metadata.userDefined["origin"] = "tests"
    return spec


def test_describe_seed_model(seed_spec):
    info = describe(seed_spec, path="m.mlmodel")
    json.dumps(info)  # serialisable as it is
    assert info["path"] == "m.mlmodel"
    assert info["kind"] == "neuralNetworkClassifier" and info["spec_version"] == 4
    assert info["updatable"] is True
    assert info["metadata"]["author"] == "Test Author"
    assert info["metadata"]["user_defined"] == {"origin": "tests"}
    assert info["inputs"] == [
        {"name": "image", "type": "image", "width": 8, "height": 8, "color_space": "RGB",
         "optional": False}
    ]  # fmt: skip
    assert [o["name"] for o in info["outputs"]] == ["output", "classLabel"]
    assert info["class_labels"] == ["Cat", "Dog"]
    assert info["predicted_feature_name"] == "classLabel"
    assert info["predicted_probabilities_name"] == "output"
    layers = {layer["name"]: layer for layer in info["layers"]}
    assert list(layers) == [l.name for l in seed_spec.neuralNetworkClassifier.layers]  # noqa: E741
    assert layers["dense_5"]["type"] == "innerProduct" and layers["dense_5"]["updatable"]
    assert layers["dense_5"]["inputs"] == ["flatten_out"]
    assert layers["relu_5"]["activation"] == "ReLU"
    assert info["updatable_layers"] == ["dense_5", "dense_6"]
    assert info["loss_layers"] == [
        {"name": "lossLayer", "type": "categoricalCrossEntropy", "input": "output",
         "target": "output_true"}
    ]  # fmt: skip
    assert info["optimizer"] == {
        "name": "sgd",
        "learning_rate": {"default": 0.01, "min": 0.0, "max": 1.0},
        "mini_batch_size": {"default": 4, "set": [2, 4, 8]},
        "momentum": {"default": 0.0, "min": 0.0, "max": 1.0},
    }
    assert info["epochs"] == {"default": 3, "set": [1, 2, 3, 5, 10]}
    assert info["shuffle"] is False and info["seed"] == {"default": 11}
    assert [f["name"] for f in info["training_inputs"]] == ["image", "classLabel"]
    assert info["preprocessing"][0]["channel_scale"] == pytest.approx(1 / 255)
    assert info["problems"] == [] and info["stages"] == []


def test_describe_adam_and_multiarray():
    info = describe(
        build_updatable_spec(optimizer="adam", image_input=False, input_shape=(2, 4, 4))
    )
    assert set(info["optimizer"]) == {
        "name",
        "learning_rate",
        "mini_batch_size",
        "beta1",
        "beta2",
        "eps",
    }
    assert info["inputs"][0] == {
        "name": "image", "type": "multiarray", "shape": [2, 4, 4], "dtype": "DOUBLE",
        "optional": False,
    }  # fmt: skip


def test_problems_are_listed_with_rule_and_layer(seed_spec):
    spec = Model_pb2.Model()
    spec.CopyFrom(seed_spec)
    spec.neuralNetworkClassifier.layers[-3].activation.linear.alpha = 1.0  # relu_5
    info = describe(spec)
    assert [(p["rule"], p["layer"]) for p in info["problems"]] == [("backprop-path", "relu_5")]
    assert info["problems"][0]["message"].startswith("backprop-path: layer 'relu_5'")


def test_frozen_model_gets_one_problem_line():
    spec = build_updatable_spec()
    spec.isUpdatable = False
    nn = spec.neuralNetworkClassifier
    nn.ClearField("updateParams")
    for layer in nn.layers:
        layer.isUpdatable = False
    info = describe(spec)
    assert [p["rule"] for p in info["problems"]] == ["is-updatable"]
    assert info["optimizer"] is None and info["epochs"] is None


def test_pipeline_describes_its_stages(seed_spec):
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    builder = KNearestNeighborsClassifierBuilder(
        input_name="features", output_name="label", number_of_dimensions=2, default_class_label=1
    )
    builder.add_samples(np.eye(2), [1, 2])
    pipe = Model_pb2.Model(specificationVersion=4, isUpdatable=True)
    pipe.description.CopyFrom(builder.spec.description)
    frozen = build_updatable_spec(loss="mse")
    frozen.isUpdatable = False
    pipe.pipelineClassifier.pipeline.models.add().CopyFrom(frozen)
    pipe.pipelineClassifier.pipeline.models.add().CopyFrom(builder.spec)
    info = describe(pipe)
    assert info["kind"] == "pipelineClassifier"
    assert [s["kind"] for s in info["stages"]] == ["neuralNetwork", "kNearestNeighborsClassifier"]
    assert info["class_labels"] == [1, 2] and info["problems"] == []
    assert info["stages"][1]["knn"] == {
        "neighbors": builder.spec.kNearestNeighborsClassifier.numberOfNeighbors.defaultValue,
        "samples": 2, "dimensions": 2, "index": "linearIndex",
        "weighting": "uniformWeighting",
    }  # fmt: skip
    text = format_description(info)
    assert "Pipeline stage 1:" in text
    assert "  Nearest neighbours: k=5, 2 samples of 2 dimensions" in text


def test_text_format(seed_spec):
    text = format_description(describe(seed_spec, path="m.mlmodel"))
    for expected in [
        "Model: m.mlmodel",
        "Kind: neuralNetworkClassifier (specification version 4), updatable",
        "  image: image 8x8 RGB",
        "Class labels (2): Cat, Dog",
        "  dense_5: innerProduct  flatten_out -> dense_5_out  [updatable]",
        "Updatable layers: dense_5, dense_6",
        "Loss: lossLayer: categoricalCrossEntropy of output against target output_true",
        "Optimizer: SGD: learning rate 0.01 (allowed [0.0, 1.0]); "
        "mini-batch size 4 (allowed {2, 4, 8})",
        "Epochs: 3 (allowed {1, 2, 3, 5, 10})",
        "Update problems: none",
    ]:
        assert expected in text, expected


def test_run_inspect_command(tmp_path, seed_spec, capsys):
    path = tmp_path / "m.mlmodel"
    save_spec(seed_spec, path)
    assert run_inspect_command(path, as_json=True) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    assert json.loads(out)["updatable_layers"] == ["dense_5", "dense_6"]
    assert run_inspect_command(path, as_json=False) == 0
    assert "Updatable layers: dense_5, dense_6" in capsys.readouterr().out


def test_cli_inspect(tmp_path, seed_spec):
    path = tmp_path / "m.mlmodel"
    save_spec(seed_spec, path)
    run = [sys.executable, "-m", "mlupdated.cli", "inspect", "--model"]
    ok = subprocess.run(run + [str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["kind"] == "neuralNetworkClassifier"
    assert ok.stderr == ""  # no library noise
    broken = tmp_path / "broken.mlmodel"
    broken.write_bytes(b"definitely not a model")
    bad = subprocess.run(run + [str(broken)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert str(broken) in bad.stderr and "not a Core ML model" in bad.stderr


def test_a_long_metadata_value_is_cut_in_text_and_whole_in_json(seed_spec):
    long_value = json.dumps({"labels": ["Cat"] * 100})
    seed_spec.description.metadata.userDefined["mlupdated.rehearsal"] = long_value
    seed_spec.description.metadata.userDefined["short"] = "kept"
    info = describe(seed_spec, path="m.mlmodel")
    text = format_description(info)
    (line,) = [x for x in text.splitlines() if x.startswith("Metadata mlupdated.rehearsal")]
    assert line.endswith(f"… ({len(long_value)} characters; --json shows all)")
    assert len(line) < 250
    assert "Metadata short: kept" in text
    assert info["metadata"]["user_defined"]["mlupdated.rehearsal"] == long_value
