"""Two real models of other people's (from the shared zoo) that exercise the classic
model types: one that must run, one that must be refused in one line.

* MarsHabitatPricer: a pipeline regressor (feature vectorizer of three doubles, then
  a GLM regressor). Its price is checked against NumPy's evaluation of the weights
  stored in the file itself.
* NSFWDetector: a Create ML image classifier whose first stage is Vision's feature
  print, which only Apple's frameworks run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml.spec import load_spec
from mlupdated.engine.predictor import Predictor
from mlupdated.errors import UnsupportedModelError

from tests.helpers.shared_data import ZOO, require

MARS = "archdanny__mlmodels__MarsHabitatPricer.mlmodel"
NSFW = "anupamchugh__iowncode__NSFWDetector.mlmodel"
INPUTS = ("solarPanels", "greenhouses", "size")


def _model(name: str):
    path = require(ZOO) / "models" / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from the shared zoo", pytrace=False)
    return path


def _numpy_price(path, rows: np.ndarray) -> np.ndarray:
    """The price by the file's own numbers: vectorize the inputs in the vectorizer's
    order, then weights . x + offset."""
    spec = load_spec(path)
    vectorizer, glm = spec.pipelineRegressor.pipeline.models
    order = [column.inputColumn for column in vectorizer.featureVectorizer.inputList]
    x = rows[:, [INPUTS.index(name) for name in order]]
    (weights,) = [np.asarray(w.value) for w in glm.glmRegressor.weights]
    return x @ weights + glm.glmRegressor.offset[0]


def _rows() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.column_stack(
        [rng.integers(1, 6, 20), rng.integers(1, 6, 20), rng.uniform(750, 10000, 20)]
    ).astype(np.float64)


def test_mars_habitat_pricer_runs():
    path = _model(MARS)
    spec = load_spec(path)
    assert spec.WhichOneof("Type") == "pipelineRegressor"
    assert [m.WhichOneof("Type") for m in spec.pipelineRegressor.pipeline.models] == [
        "featureVectorizer",
        "glmRegressor",
    ]
    rows = _rows()
    predictions = Predictor.from_path(path).predict_features(
        {name: rows[:, i] for i, name in enumerate(INPUTS)}
    )
    got = np.asarray([p.outputs["price"] for p in predictions])
    expected = _numpy_price(path, rows)
    assert np.abs(got - expected).max() <= 1e-9 * np.abs(expected).max()


def test_mars_habitat_pricer_from_python_and_the_command_line(tmp_path, capsys):
    import mlupdated

    path = _model(MARS)
    rows = _rows()[:3]
    expected = _numpy_price(path, rows)
    example = dict(zip(INPUTS, rows[0].tolist(), strict=True))
    result = mlupdated.predict(path, example)
    assert list(result) == ["price"] and isinstance(result["price"], float)
    assert result["price"] == pytest.approx(expected[0], rel=1e-9)

    args = ["predict", "--model", str(path), "--json"]
    args += [f"--input={name}={value!r}" for name, value in example.items()]
    assert cli.main(args) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["outputs"]["price"] == pytest.approx(expected[0], rel=1e-9)

    lines = tmp_path / "habitats.jsonl"
    lines.write_text(
        "\n".join(json.dumps(dict(zip(INPUTS, r.tolist(), strict=True))) for r in rows) + "\n"
    )
    assert cli.main(["predict", "--model", str(path), "--features", str(lines), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    got = [r["outputs"]["price"] for r in records]
    assert np.allclose(got, expected, rtol=1e-9, atol=0)


def test_mars_habitat_pricer_inspect_gives_a_command_that_runs(capsys):
    import shlex

    path = _model(MARS)
    assert cli.main(["inspect", "--model", str(path)]) == 0
    (call,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Call: ")]
    words = shlex.split(call.removeprefix("Call: "))
    assert words[:2] == ["mlupdated", "predict"]
    assert cli.main(words[1:]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("price=")


def test_nsfw_detector_is_refused_in_one_line():
    path = _model(NSFW)
    with pytest.raises(UnsupportedModelError) as caught:
        Predictor.from_path(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "pipeline stage 0" in message and "'visionFeaturePrint'" in message
    assert "only be run by Apple's frameworks" in message


def test_nsfw_detector_refused_by_the_command_line(tmp_path):
    path = _model(NSFW)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")  # never read: the model is refused first
    for args in (["predict", "--model", str(path), str(photo)], ["inspect", "--model", str(path)]):
        done = subprocess.run(
            [sys.executable, "-m", "mlupdated.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        assert "'visionFeaturePrint' can only be run by Apple's frameworks" in line
