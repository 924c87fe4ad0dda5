"""``mlupdated predict --input/--features``, ``--json``/``--out-dir`` and
``mlupdated.predict`` for every input type: multi-array, double, int64, string,
dictionary and image; one-line errors for bad inputs.

Expected values come from NumPy (a network's weights, read back from the spec), from
a Python dict (a categorical mapping) and from scikit-learn (a dictionary vectorizer
pipeline).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml import proto  # noqa: F401  (silences coremltools before importing it)
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import save_spec
from mlupdated.errors import FeatureError

logging.getLogger("coremltools").setLevel(logging.ERROR)

W = np.random.default_rng(21).normal(size=(2, 3)).astype(np.float32)
B = np.asarray([0.5, -1.0], dtype=np.float32)


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A network of one multi-array input [3]: y = relu(W x + b), y of shape [2]."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(2))])
    builder.add_inner_product("dense", W, B, 3, 2, True, "x", "dense_out")
    builder.add_activation("relu", "RELU", "dense_out", "y")
    path = tmp_path_factory.mktemp("net") / "net.mlmodel"
    save_spec(builder.spec, path)
    return path


def _expected(x) -> np.ndarray:
    return np.maximum(W.astype(np.float64) @ np.asarray(x, dtype=np.float64) + B, 0)


def _feature(feature, name: str, kind: str) -> None:
    feature.name = name
    getattr(feature.type, kind).SetInParent()


MAPPING = {"cat": 3, "dog": 7, "bird": -2}


@pytest.fixture(scope="module")
def mapping(tmp_path_factory):
    """string -> int64 categorical mapping, unknown words -> -1."""
    spec = Model_pb2.Model(specificationVersion=1)
    spec.categoricalMapping.stringToInt64Map.map.update(MAPPING)
    spec.categoricalMapping.int64Value = -1
    _feature(spec.description.input.add(), "animal", "stringType")
    _feature(spec.description.output.add(), "code", "int64Type")
    path = tmp_path_factory.mktemp("map") / "map.mlmodel"
    save_spec(spec, path)
    return path


@pytest.fixture(scope="module")
def back_mapping(tmp_path_factory):
    """int64 -> string categorical mapping."""
    spec = Model_pb2.Model(specificationVersion=1)
    spec.categoricalMapping.int64ToStringMap.map.update({v: k for k, v in MAPPING.items()})
    spec.categoricalMapping.strValue = "unknown"
    _feature(spec.description.input.add(), "code", "int64Type")
    _feature(spec.description.output.add(), "animal", "stringType")
    path = tmp_path_factory.mktemp("back") / "back.mlmodel"
    save_spec(spec, path)
    return path


@pytest.fixture(scope="module")
def dict_model(tmp_path_factory):
    """scikit-learn: DictVectorizer then logistic regression, string labels."""
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    import coremltools as ct
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(8)
    rows = [
        {k: float(rng.normal()) for k in ("a", "b", "c") if rng.random() < 0.9} for _ in range(60)
    ]
    y = np.asarray(["yes" if r.get("a", 0) - r.get("c", 0) > 0 else "no" for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Pipeline(
            [("v", DictVectorizer(sparse=False)), ("lr", LogisticRegression(multi_class="ovr"))]
        ).fit(rows, y)
        spec = ct.converters.sklearn.convert(model, "features", "label").get_spec()
    path = tmp_path_factory.mktemp("dict") / "dict.mlmodel"
    save_spec(spec, path)
    return path, model


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_multiarray_input_as_json_and_npy(network, tmp_path, capsys):
    x = [0.25, -1.5, 2.0]
    code, out, _ = _run(capsys, "predict", "--model", str(network), "--input", f"x={x}", "--json")
    assert code == 0
    record = json.loads(out)
    assert set(record) == {"outputs"}
    assert np.allclose(record["outputs"]["y"], _expected(x), atol=1e-5)

    npy = tmp_path / "x.npy"
    np.save(npy, np.asarray(x))
    code, out, _ = _run(capsys, "predict", "--model", str(network), "--input", f"x={npy}")
    assert code == 0 and out.startswith("y=[") and len(out.splitlines()) == 1


def test_out_dir_writes_arrays(network, tmp_path, capsys):
    out_dir = tmp_path / "out"
    x = [1.0, 2.0, -3.0]
    code, out, _ = _run(
        capsys, "predict", "--model", str(network), "--input", f"x={x}", "--json",
        "--out-dir", str(out_dir),
    )  # fmt: skip
    assert code == 0
    written = json.loads(out)["outputs"]["y"]
    assert written == str(out_dir / "y.npy")
    assert np.allclose(np.load(written).reshape(-1), _expected(x), atol=1e-5)


def test_features_file_batches_and_reports_bad_lines(network, tmp_path, capsys):
    rows = np.random.default_rng(3).normal(size=(4, 3))
    lines = [json.dumps({"x": r.tolist()}) for r in rows]
    lines.insert(2, json.dumps({"x": [1.0, 2.0]}))  # wrong shape: line 3
    lines.insert(3, "")  # blank lines are skipped
    lines.append("not json")  # line 7
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = _run(
        capsys, "predict", "--model", str(network), "--features", str(path), "--json"
    )
    assert code == 1  # some inputs failed
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 5, 6, 7]
    good = [r for r in records if "outputs" in r]
    for record, row in zip(good, rows, strict=True):
        assert np.allclose(record["outputs"]["y"], _expected(row), atol=1e-5)
    errors = {r["line"]: r["error"] for r in records if "error" in r}
    assert errors[3] == "input 'x' has shape (2,), the model expects (3,)"
    assert errors[7].startswith("not a JSON object")


def test_features_out_dir_one_folder_per_line(network, tmp_path, capsys):
    path = tmp_path / "two.jsonl"
    path.write_text('{"x": [1, 2, 3]}\n{"x": [0, 0, 1]}\n')
    out_dir = tmp_path / "arrays"
    code, out, _ = _run(
        capsys, "predict", "--model", str(network), "--features", str(path), "--json",
        "--out-dir", str(out_dir),
    )  # fmt: skip
    assert code == 0
    for line, x in zip(out.splitlines(), ([1, 2, 3], [0, 0, 1]), strict=True):
        record = json.loads(line)
        written = out_dir / str(record["line"]) / "y.npy"
        assert record["outputs"]["y"] == str(written)
        assert np.allclose(np.load(written).reshape(-1), _expected(x), atol=1e-5)


def test_string_and_int64_inputs(mapping, back_mapping, capsys):
    for word in ("dog", "bird", "fish"):
        code, out, _ = _run(capsys, "predict", "--model", str(mapping), "--input", f"animal={word}")
        assert code == 0 and out.strip() == f"code={MAPPING.get(word, -1)}"
    reverse = {v: k for k, v in MAPPING.items()}
    for number in (3, -2, 5):
        code, out, _ = _run(
            capsys, "predict", "--model", str(back_mapping), "--input", f"code={number}", "--json"
        )
        assert code == 0
        assert json.loads(out)["outputs"] == {"animal": reverse.get(number, "unknown")}


def test_dictionary_input(dict_model, capsys):
    import mlupdated

    path, model = dict_model
    example = {"a": 0.7, "c": -0.2}
    code, out, _ = _run(
        capsys,
        "predict",
        "--model",
        str(path),
        "--input",
        f"features={json.dumps(example)}",
        "--json",
    )  # noqa: E501
    assert code == 0
    record = json.loads(out)
    assert record["label"] == model.predict([example])[0]
    expected = dict(zip(model.classes_, model.predict_proba([example])[0], strict=True))
    for label, p in expected.items():
        assert record["probabilities"][label] == pytest.approx(p, abs=1e-5)
    result = mlupdated.predict(path, {"features": example})
    assert result["label"] == record["label"]
    assert result["classProbability"] == pytest.approx(expected, abs=1e-5)


def test_python_api_returns_every_output(network):
    import mlupdated

    result = mlupdated.predict(network, {"x": np.asarray([0.1, 0.2, 0.3])})
    assert list(result) == ["y"]
    assert isinstance(result["y"], np.ndarray)
    assert np.allclose(result["y"].reshape(-1), _expected([0.1, 0.2, 0.3]), atol=1e-5)
    with pytest.raises(FeatureError, match="input 'x' is missing"):
        mlupdated.predict(network, {})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "x=[1,2,3]", "--input", "z=1"], "unknown input 'z' (the model's inputs: x)"),
        (["--input", "x=[1,2]"], "input 'x' has shape (2,), the model expects (3,)"),
        (["--input", "x=hello"], "input 'x' must be a JSON array or a .npy file, got 'hello'"),
        (["--input", 'x=["a","b","c"]'], "input 'x' must be an array of numbers"),
        (["--input", "x=missing.npy"], "input 'x': cannot read missing.npy"),
        (["--input", "x"], "--input 'x': expected NAME=VALUE"),
        (["--input", "x=[1,2,3]", "--input", "x=[1,2,3]"], "input 'x' is given twice"),
    ],
)
def test_bad_inputs_fail_in_one_line_with_exit_2(network, capsys, args, message):
    model = ["predict", "--model", str(network)]
    code, out, err = _run(capsys, *model, *args)
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("mlupdated: error: ") and message in line


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x", "input 'code' must be an integer (int64), got 'x'"),
        ("1.5", "input 'code' must be an integer (int64), got 1.5"),
        ("[1,2]", "input 'code' must be an integer (int64), got [1, 2]"),
    ],
)
def test_wrong_scalar_types(back_mapping, capsys, value, message):
    code, out, err = _run(
        capsys, "predict", "--model", str(back_mapping), "--input", f"code={value}"
    )
    assert code == 2 and out == ""
    assert err.strip() == f"mlupdated: error: {message}"


@pytest.fixture(scope="module")
def two_doubles(tmp_path_factory):
    """scikit-learn's linear regression of two named double inputs."""
    pytest.importorskip("sklearn")
    import coremltools as ct
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(9).normal(size=(20, 2))
    model = LinearRegression().fit(x, x @ [2.0, -1.0] + 0.5)
    spec = ct.converters.sklearn.convert(model, ["a", "b"], "y").get_spec()
    path = tmp_path_factory.mktemp("two") / "two.mlmodel"
    save_spec(spec, path)
    return path, model


def test_doubles_and_a_missing_one(two_doubles, capsys):
    path, model = two_doubles
    code, out, _ = _run(
        capsys, "predict", "--model", str(path), "--input", "a=1.5", "--input", "b=-2"
    )
    assert code == 0
    assert out.strip() == f"y={model.predict([[1.5, -2.0]])[0]:.6g}"
    code, out, err = _run(capsys, "predict", "--model", str(path), "--input", "a=1.5")
    assert code == 2 and out == ""
    assert err.strip() == "mlupdated: error: input 'b' is missing (it takes a number (double))"
    code, _, err = _run(capsys, "predict", "--model", str(path), "--input", "a=1", "--input", "b=x")
    assert code == 2
    assert err.strip() == "mlupdated: error: input 'b' must be a number (double), got 'x'"


def test_dictionary_with_a_non_number_value(dict_model, capsys):
    path, _ = dict_model
    code, _, err = _run(capsys, "predict", "--model", str(path), "--input", 'features={"a": "x"}')
    assert code == 2
    assert "input 'features': the value of key 'a' must be a number, got 'x'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photo.jpg", "--input", "x=1"], "not both"),
        (["--input", "x=1", "--features", "f.jsonl"], "not both"),
        (["--input", "x=[1,2,3]", "--out-dir", "d"], "--out-dir needs --json"),
        (["photo.jpg", "--out-dir", "d"], "--out-dir goes with --input or --features"),
        ([], "give IMAGE files, --input NAME=VALUE or --features FILE"),
    ],
)
def test_usage_errors(network, capsys, args, message):
    code, out, err = _run(capsys, "predict", "--model", str(network), *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_image_by_input_matches_image_by_path(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    code, by_path, _ = _run(capsys, "predict", str(photo), "--json")
    assert code == 0
    code, by_input, _ = _run(capsys, "predict", "--input", f"image={photo}", "--json")
    assert code == 0
    first, second = json.loads(by_path), json.loads(by_input)
    assert first["label"] == second["label"]
    assert first["probabilities"] == second["probabilities"]
    code, text, _ = _run(capsys, "predict", "--input", f"image={photo}")
    assert text.strip() == f"{first['label']} ({first['probabilities'][first['label']]:.4f})"


def test_the_command_runs_as_a_program(mapping):
    done = subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", "predict", "--model", str(mapping),
         "--input", "animal=cat", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"outputs": {"code": MAPPING["cat"]}}
    assert done.stderr == ""


def test_inspect_shows_how_to_call(network, mapping, dict_model, capsys):
    for path, expected in (
        (network, "--input 'x=[0.0,0.0,0.0]'"),
        (mapping, "--input animal=text"),
        (dict_model[0], "--input 'features={\"key\":1.0}'"),
    ):
        code, out, _ = _run(capsys, "inspect", "--model", str(path))
        assert code == 0
        (call,) = [line for line in out.splitlines() if line.startswith("Call: ")]
        assert call == f"Call: mlupdated predict --model {path} {expected}"
        code, out, _ = _run(capsys, "inspect", "--model", str(path), "--json")
        assert json.loads(out)["call"]["command"] == call.removeprefix("Call: ")


def test_features_from_standard_input(mapping):
    done = subprocess.run(
        [sys.executable, "-m", "mlupdated.cli", "predict", "--model", str(mapping),
         "--features", "-"],
        input='{"animal": "dog"}\n{"animal": 3}\n{"animal": "cat"}\n',
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1  # line 2 is not a string
    assert done.stdout.splitlines() == [
        f"line 1: code={MAPPING['dog']}",
        "line 2: error: input 'animal' must be a string, got 3",
        f"line 3: code={MAPPING['cat']}",
    ]


def test_image_paths_in_a_features_file(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    pixels = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    lines = tmp_path / "photos.jsonl"
    missing = tmp_path / "nope.jpg"
    lines.write_text(json.dumps({"image": str(photo)}) + "\n" + json.dumps({"image": str(missing)}))
    code, out, _ = _run(capsys, "predict", "--features", str(lines), "--json")
    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    code, by_path, _ = _run(capsys, "predict", str(photo), "--json")
    assert first["label"] == json.loads(by_path)["label"]
    assert first["probabilities"] == json.loads(by_path)["probabilities"]
    assert second["line"] == 2 and "error" in second
