"""Core ML's protobuf classes, imported quickly and quietly.

The classes live in coremltools' ``proto`` package, but importing that package the
ordinary way first runs coremltools' own start-up: it imports its converters (and
torch, when torch is installed — seconds of start-up for every ``mlupdated predict``)
and logs warnings on every machine without Apple's native Core ML bridge. We need
only the generated ``*_pb2`` modules, so when coremltools has not been imported yet,
its ``proto`` package is loaded under a stand-in for the top-level package, which is
removed again at once. The ``coremltools.proto.*`` modules stay registered, so a
later real ``import coremltools`` (tests, the model build) reuses the very same
classes instead of registering the descriptors twice. Everything in mlupdated that
needs the spec classes imports them from this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
import warnings

_PACKAGE = "coremltools"
_MODULES = ("FeatureTypes_pb2", "Model_pb2", "NearestNeighbors_pb2", "NeuralNetwork_pb2")


def _import_protos() -> list[types.ModuleType]:
    if _PACKAGE in sys.modules:
        return [importlib.import_module(f"{_PACKAGE}.proto.{name}") for name in _MODULES]
    found = importlib.util.find_spec(_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ImportError("mlupdated needs coremltools (pip install coremltools)")
    stand_in = types.ModuleType(_PACKAGE)
    stand_in.__path__ = list(found.submodule_search_locations)
    sys.modules[_PACKAGE] = stand_in
    try:
        return [importlib.import_module(f"{_PACKAGE}.proto.{name}") for name in _MODULES]
    finally:
        # Only the stand-in goes: the real package runs its own start-up if imported.
        if sys.modules.get(_PACKAGE) is stand_in:
            del sys.modules[_PACKAGE]


# coremltools warns on import where its native bridge is absent (every non-macOS
# machine) and about untested torch versions; none of that concerns our users.
logging.getLogger(_PACKAGE).setLevel(logging.ERROR)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    FeatureTypes_pb2, Model_pb2, NearestNeighbors_pb2, NeuralNetwork_pb2 = _import_protos()

__all__ = ["FeatureTypes_pb2", "Model_pb2", "NearestNeighbors_pb2", "NeuralNetwork_pb2"]
