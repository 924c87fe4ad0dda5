"""Core ML's imputer for the values ONNX has no operator for: strings, a single int64,
and dictionaries, in NumPy (the doubles and arrays are ONNX, see ``transformers``).

What is missing (``Imputer.proto`` and Core ML's validator for it):

* a string: the ``replaceStringValue`` when one is set; an optional input left out;
* an int64: the ``replaceInt64Value`` when one is set; an optional input left out;
* a dictionary: only an optional input left out (no replace value is allowed), which
  becomes the imputed dictionary; a dictionary given passes through unchanged.

An input left out arrives as ``None`` (see ``coreml.features.check_example``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import InvalidModelError, UnsupportedModelError

# ImputedValue cases run here, with the ReplaceValue case each one allows.
NUMPY_IMPUTED = {
    "imputedStringValue": "replaceStringValue",
    "imputedInt64Value": "replaceInt64Value",
    "imputedStringDictionary": None,
    "imputedInt64Dictionary": None,
}
# The input feature type each case takes.
_INPUT_TYPES = {
    "imputedStringValue": "stringType",
    "imputedInt64Value": "int64Type",
    "imputedStringDictionary": "dictionaryType",
    "imputedInt64Dictionary": "dictionaryType",
}


def runs_in_numpy(spec: Any) -> bool:
    """Whether this imputer is one of the cases of this module."""
    return spec.imputer.WhichOneof("ImputedValue") in NUMPY_IMPUTED


class NumpyImputer:
    """One imputer of strings, an int64 or dictionaries, checked when it is built."""

    def __init__(self, spec: Any) -> None:
        imp = spec.imputer
        self.which = imp.WhichOneof("ImputedValue")
        replace = imp.WhichOneof("ReplaceValue")
        allowed = NUMPY_IMPUTED[self.which]
        if replace is not None and replace != allowed:
            raise UnsupportedModelError(
                f"imputer: {self.which} with a {replace} (it takes {allowed or 'no replace value'})"
            )
        inputs, outputs = list(spec.description.input), list(spec.description.output)
        if len(inputs) != 1 or len(outputs) != 1:
            raise InvalidModelError("imputer: it takes one input and gives one output")
        self.input, self.output = inputs[0].name, outputs[0].name
        kind = inputs[0].type.WhichOneof("Type")
        if kind != _INPUT_TYPES[self.which] or outputs[0].type.WhichOneof("Type") != kind:
            raise InvalidModelError(
                f"imputer: {self.which} takes and gives {_INPUT_TYPES[self.which]}, "
                f"its input {self.input!r} is {kind}"
            )
        self.missing: Any = getattr(imp, replace) if replace is not None else None
        if self.which == "imputedStringDictionary":
            self.fill: Any = {str(k): float(v) for k, v in imp.imputedStringDictionary.map.items()}
        elif self.which == "imputedInt64Dictionary":
            self.fill = {int(k): float(v) for k, v in imp.imputedInt64Dictionary.map.items()}
        else:
            self.fill = getattr(imp, self.which)

    def _one(self, value: Any) -> Any:
        if value is None or (self.missing is not None and value == self.missing):
            return dict(self.fill) if isinstance(self.fill, dict) else self.fill
        return value

    def run(self, values: Sequence[Any]) -> Any:
        """The imputed batch: strings as an object array, int64s as an int64 array,
        dictionaries as a list."""
        out = [self._one(v) for v in values]
        if self.which == "imputedStringValue":
            return np.asarray(out, dtype=object)
        if self.which == "imputedInt64Value":
            return np.asarray(out, dtype=np.int64)
        return out


__all__ = ["NumpyImputer", "runs_in_numpy"]
