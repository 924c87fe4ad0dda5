"""Core ML's imputer of strings, int64s (a value and an array) and dictionaries.

coremltools' scikit-learn converter writes only the double-array imputer (tested in
test_classic_sklearn.py), so these specs are written field by field from
``Imputer.proto``. Where scikit-learn's ``SimpleImputer`` has a match (a string or an
int64 column with a missing marker) the imputed value is what it learned and the
result is compared with its ``transform``; the dictionary cases (no replace value:
an optional input left out becomes the imputed dictionary) follow Core ML's validator,
checked against the dictionaries the test builds itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlupdated import cli
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import save_spec
from mlupdated.engine.feature_command import predict
from mlupdated.engine.predictor import Predictor
from mlupdated.errors import FeatureError, MlupdatedError

sklearn_impute = pytest.importorskip("sklearn.impute")

DOUBLE = 65600  # ArrayFeatureType.DOUBLE


def _imputer(kind: str, *, optional: bool = False, width: int | None = None) -> Model_pb2.Model:
    spec = Model_pb2.Model(specificationVersion=1)
    spec.imputer.SetInParent()
    for features, name in ((spec.description.input, "x"), (spec.description.output, "y")):
        feature = features.add()
        feature.name = name
        if kind == "multiArrayType":
            feature.type.multiArrayType.shape.append(width or 1)
            feature.type.multiArrayType.dataType = DOUBLE
        elif kind == "dictionaryType":
            feature.type.dictionaryType.stringKeyType.SetInParent()
        else:
            getattr(feature.type, kind).SetInParent()
    spec.description.input[0].type.isOptional = optional
    return spec


def _saved(spec, tmp_path, name: str = "imputer.mlmodel"):
    path = tmp_path / name
    save_spec(spec, path)
    return path


def _one_by_one(path, values: list) -> list:
    """``mlupdated.predict`` on each value (None: the input left out)."""
    return [predict(path, {} if v is None else {"x": v})["y"] for v in values]


def test_a_string_marker_is_replaced_as_scikit_learn_does(tmp_path) -> None:
    column = np.array([["red"], ["?"], ["blue"], ["red"], ["?"], ["green"]], dtype=object)
    sk = sklearn_impute.SimpleImputer(missing_values="?", strategy="most_frequent").fit(column)
    spec = _imputer("stringType")
    spec.imputer.imputedStringValue = str(sk.statistics_[0])
    spec.imputer.replaceStringValue = "?"
    path = _saved(spec, tmp_path)
    got = _one_by_one(path, list(column[:, 0]))
    assert got == list(sk.transform(column)[:, 0])
    assert got.count("red") == 4  # the marker really was replaced

    # A batch through the Predictor gives the same.
    (batch,) = [Predictor(spec).predict_features({"x": np.asarray(column[:, 0])})]
    assert [p.outputs["y"] for p in batch] == got


def test_a_string_left_out_is_imputed_when_the_input_is_optional(tmp_path) -> None:
    spec = _imputer("stringType", optional=True)
    spec.imputer.imputedStringValue = "unknown"
    path = _saved(spec, tmp_path)
    assert _one_by_one(path, ["cat", None, ""]) == ["cat", "unknown", ""]


def test_an_int64_marker_is_replaced_as_scikit_learn_does(tmp_path) -> None:
    column = np.array([[3], [-1], [7], [7], [-1], [2]], dtype=np.int64)
    sk = sklearn_impute.SimpleImputer(missing_values=-1, strategy="most_frequent").fit(column)
    spec = _imputer("int64Type", optional=True)
    spec.imputer.imputedInt64Value = int(sk.statistics_[0])
    spec.imputer.replaceInt64Value = -1
    path = _saved(spec, tmp_path)
    got = _one_by_one(path, [int(v) for v in column[:, 0]])
    assert got == [int(v) for v in sk.transform(column)[:, 0]]
    assert all(isinstance(v, int) for v in got) and got.count(7) == 4
    # Left out (the input is optional): imputed as well.
    assert _one_by_one(path, [None]) == [int(sk.statistics_[0])]


def test_an_int64_array_marker_is_replaced_per_column_as_scikit_learn_does(tmp_path) -> None:
    rows = np.array([[1, 5, -9], [-9, 5, 4], [1, -9, 4], [2, 6, 4]], dtype=np.int64)
    sk = sklearn_impute.SimpleImputer(missing_values=-9, strategy="most_frequent").fit(rows)
    spec = _imputer("multiArrayType", width=3)
    spec.imputer.imputedInt64Array.vector.extend(int(v) for v in sk.statistics_)
    spec.imputer.replaceInt64Value = -9
    path = _saved(spec, tmp_path)
    got = np.stack(_one_by_one(path, [r.astype(np.float64) for r in rows]))
    np.testing.assert_array_equal(got, sk.transform(rows))
    assert not (got == -9).any()


def test_a_dictionary_left_out_becomes_the_imputed_one(tmp_path) -> None:
    spec = _imputer("dictionaryType", optional=True)
    imputed = {"apples": 2.0, "pears": 0.5}
    spec.imputer.imputedStringDictionary.map.update(imputed)
    path = _saved(spec, tmp_path)
    given = {"plums": 3.0}
    assert _one_by_one(path, [given, None]) == [given, imputed]


def test_an_int64_keyed_dictionary_left_out_becomes_the_imputed_one(tmp_path) -> None:
    spec = _imputer("dictionaryType", optional=True)
    for feature in (spec.description.input[0], spec.description.output[0]):
        feature.type.dictionaryType.int64KeyType.SetInParent()
    imputed = {3: 1.5, 10: -2.0}
    spec.imputer.imputedInt64Dictionary.map.update(imputed)
    path = _saved(spec, tmp_path)
    assert _one_by_one(path, [None, {1: 4.0}]) == [imputed, {1: 4.0}]


def test_a_required_input_left_out_is_still_refused(tmp_path) -> None:
    spec = _imputer("stringType")
    spec.imputer.imputedStringValue = "unknown"
    spec.imputer.replaceStringValue = ""
    with pytest.raises(FeatureError, match=r"^input 'x' is missing \(it takes a string\)$"):
        predict(_saved(spec, tmp_path), {})


@pytest.mark.parametrize(
    ("kind", "field", "value", "replace", "message"),
    [
        (
            "stringType",
            "imputedStringValue",
            "a",
            ("replaceInt64Value", 3),
            "imputedStringValue with a replaceInt64Value (it takes replaceStringValue)",
        ),
        (
            "int64Type",
            "imputedInt64Value",
            1,
            ("replaceStringValue", "?"),
            "imputedInt64Value with a replaceStringValue (it takes replaceInt64Value)",
        ),
        (
            "dictionaryType",
            "imputedStringDictionary",
            {"a": 1.0},
            ("replaceStringValue", "?"),
            "imputedStringDictionary with a replaceStringValue (it takes no replace value)",
        ),
        (
            "doubleType",
            "imputedStringValue",
            "a",
            None,
            "imputedStringValue takes and gives stringType, its input 'x' is doubleType",
        ),
    ],
)
def test_a_spec_the_validator_refuses_is_refused_in_one_line(
    kind, field, value, replace, message
) -> None:
    spec = _imputer(kind)
    if isinstance(value, dict):
        getattr(spec.imputer, field).map.update(value)
    else:
        setattr(spec.imputer, field, value)
    if replace is not None:
        setattr(spec.imputer, *replace)
    with pytest.raises(MlupdatedError) as caught:
        Predictor(spec)
    text = str(caught.value)
    assert "\n" not in text and message in text, text


def test_the_command_imputes_a_string(tmp_path, capsys) -> None:
    spec = _imputer("stringType")
    spec.imputer.imputedStringValue = "unknown"
    spec.imputer.replaceStringValue = "n/a"
    path = _saved(spec, tmp_path)
    code = cli.main(["predict", "--model", str(path), "--input", "x=n/a"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "y=unknown"
