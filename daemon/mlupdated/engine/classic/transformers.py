"""The feature transformers: normalizer, one-hot encoder, imputer, scaler, feature
vectorizer, array feature extractor, categorical mapping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from ...errors import InvalidModelError, UnsupportedModelError
from .graph import Graph, declare_input, enum_name, feature_width, only_output, single_input

# --- transformers ------------------------------------------------------------------------


def normalizer(g: Graph, spec: Any) -> dict[str, str]:
    x, _ = single_input(g, spec)
    norm = enum_name(spec.normalizer, "normType")
    # Written out in double: onnxruntime's Normalizer answers in float32, and its MAX
    # takes the largest signed value where Core ML's LMax takes the largest magnitude.
    if norm == "L1":
        size = g.op("ReduceL1", [x], axes=[1], keepdims=1)
    elif norm == "L2":
        size = g.op("ReduceL2", [x], axes=[1], keepdims=1)
    else:
        size = g.op("ReduceMax", [g.op("Abs", [x])], axes=[1], keepdims=1)
    # A row of zeros stays zeros.
    is_zero = g.op("Equal", [size, g.const(np.float64(0))], out_type=TensorProto.BOOL)
    safe = g.op("Where", [is_zero, g.const(np.float64(1)), size])
    return {only_output(spec): g.op("Div", [x, safe])}


def one_hot(g: Graph, spec: Any) -> dict[str, str]:
    ohe = spec.oneHotEncoder
    x, feature = single_input(g, spec)
    attrs: dict[str, Any] = {
        "zeros": 1 if enum_name(ohe, "handleUnknown") == "IgnoreUnknown" else 0
    }
    which = ohe.WhichOneof("CategoryType")
    if which == "stringCategories":
        attrs["cats_strings"] = [str(v) for v in ohe.stringCategories.vector]
    elif which == "int64Categories":
        attrs["cats_int64s"] = [int(v) for v in ohe.int64Categories.vector]
        if feature.type.WhichOneof("Type") == "multiArrayType":
            x = g.op("Cast", [x], to=TensorProto.INT64)
    else:
        raise InvalidModelError("the one-hot encoder has no categories")
    encoded = g.op("OneHotEncoder", [x], ml=True, out_type=TensorProto.FLOAT, **attrs)
    flat = g.op("Flatten", [encoded], axis=1, out_type=TensorProto.FLOAT)
    return {only_output(spec): g.op("Cast", [flat], to=TensorProto.DOUBLE)}


def imputer(g: Graph, spec: Any) -> dict[str, str]:
    imp = spec.imputer
    x, feature = single_input(g, spec)
    which = imp.WhichOneof("ImputedValue")
    replace = imp.WhichOneof("ReplaceValue")
    if which in ("imputedDoubleValue", "imputedDoubleArray"):
        values = (
            [float(imp.imputedDoubleValue)]
            if which == "imputedDoubleValue"
            else [float(v) for v in imp.imputedDoubleArray.vector]
        )
        if replace not in (None, "replaceDoubleValue"):
            raise UnsupportedModelError(f"imputer of doubles replacing a {replace} value")
        missing = float(imp.replaceDoubleValue) if replace else float("nan")
        # In double (onnxruntime's Imputer takes float32 only): where x is the missing
        # value (NaN: where x is NaN), the imputed value of its column.
        if np.isnan(missing):
            hit = g.op("IsNaN", [x], out_type=TensorProto.BOOL)
        else:
            hit = g.op("Equal", [x, g.const(np.float64(missing))], out_type=TensorProto.BOOL)
        fill = g.const(np.asarray(values, np.float64).reshape(1, -1), hint="imputed")
        return {only_output(spec): g.op("Where", [hit, fill, x])}
    # Strings, a single int64 and dictionaries are imputed in NumPy (see imputer.py).
    if which == "imputedInt64Array":
        values = [int(v) for v in imp.imputedInt64Array.vector]
        if replace != "replaceInt64Value":
            raise UnsupportedModelError("imputer of int64 values without a value to replace")
        if feature.type.WhichOneof("Type") != "int64Type":
            x = g.op("Cast", [x], to=TensorProto.INT64)
        y = g.op(
            "Imputer",
            [x],
            ml=True,
            out_type=TensorProto.INT64,
            imputed_value_int64s=values,
            replaced_value_int64=int(imp.replaceInt64Value),
        )
        return {only_output(spec): y}
    raise UnsupportedModelError(f"imputer of {which or 'no'} values is not supported")


def scaler(g: Graph, spec: Any) -> dict[str, str]:
    sc = spec.scaler
    x, feature = single_input(g, spec)
    d = feature_width(feature)
    shift = [float(v) for v in sc.shiftValue] or [0.0]
    scale = [float(v) for v in sc.scaleValue] or [1.0]
    for what, values in (("shift", shift), ("scale", scale)):
        if len(values) not in (1, d or len(values)):
            raise InvalidModelError(f"the scaler has {len(values)} {what} values for {d} inputs")
    # Core ML: y = (x + shift) * scale, here in double (onnxruntime's Scaler answers
    # in float32, which can move a value across a tree's threshold further on).
    shifted = g.op("Add", [x, g.const(np.asarray(shift, np.float64).reshape(1, -1))])
    y = g.op("Mul", [shifted, g.const(np.asarray(scale, np.float64).reshape(1, -1))])
    return {only_output(spec): y}


def feature_vectorizer(g: Graph, spec: Any) -> dict[str, str]:
    fv = spec.featureVectorizer
    by_name = {f.name: f for f in spec.description.input}
    names: list[str] = []
    declared: dict[str, str] = {}
    for column in fv.inputList:
        feature = by_name.get(column.inputColumn)
        if feature is None:
            raise InvalidModelError(
                f"the feature vectorizer reads {column.inputColumn!r}, which is not an input"
            )
        if column.inputColumn not in declared:
            width = int(column.inputDimensions) or None
            declared[column.inputColumn] = declare_input(g, feature, width)
        x = declared[column.inputColumn]
        if feature.type.WhichOneof("Type") == "int64Type":
            x = g.op("Cast", [x], to=TensorProto.DOUBLE)
        d = int(column.inputDimensions) or (feature_width(feature) or 1)
        known = feature_width(feature) if feature.type.WhichOneof("Type") != "dictionaryType" else d
        if known is not None and known != d:
            raise InvalidModelError(
                f"the feature vectorizer takes {d} values of {column.inputColumn!r}, "
                f"which has {known}"
            )
        names.append(x)
    if not names:
        raise InvalidModelError("the feature vectorizer has no input columns")
    # Concatenated in double (onnxruntime's FeatureVectorizer answers in float32).
    y = names[0] if len(names) == 1 else g.op("Concat", names, axis=1)
    if y == names[0]:
        y = g.op("Identity", [y])
    return {only_output(spec): y}


def array_feature_extractor(g: Graph, spec: Any) -> dict[str, str]:
    x, _ = single_input(g, spec)
    indices = [int(v) for v in spec.arrayFeatureExtractor.extractIndex]
    if not indices:
        raise InvalidModelError("the array feature extractor extracts no index")
    y = g.op(
        "ArrayFeatureExtractor",
        [x, g.const(np.asarray(indices, np.int64))],
        ml=True,
        out_type=g.types[x],
    )
    return {only_output(spec): y}


def categorical_mapping(g: Graph, spec: Any) -> dict[str, str]:
    cm = spec.categoricalMapping
    x, feature = single_input(g, spec)
    which = cm.WhichOneof("MappingType")
    if which == "stringToInt64Map":
        pairs = sorted(cm.stringToInt64Map.map.items())
    elif which == "int64ToStringMap":
        pairs = sorted((str(v), k) for k, v in cm.int64ToStringMap.map.items())
        pairs = [(s, int(k)) for s, k in pairs]
        if feature.type.WhichOneof("Type") != "int64Type":
            x = g.op("Cast", [x], to=TensorProto.INT64)
    else:
        raise InvalidModelError("the categorical mapping has no map")
    attrs: dict[str, Any] = {
        "cats_strings": [s for s, _ in pairs],
        "cats_int64s": [int(k) for _, k in pairs],
    }
    unknown = cm.WhichOneof("ValueOnUnknown")
    if unknown == "strValue":
        attrs["default_string"] = cm.strValue
    elif unknown == "int64Value":
        attrs["default_int64"] = int(cm.int64Value)
    out_type = TensorProto.INT64 if which == "stringToInt64Map" else TensorProto.STRING
    return {only_output(spec): g.op("CategoryMapper", [x], ml=True, out_type=out_type, **attrs)}
