"""Core ML's protobuf classes, imported quietly.

coremltools logs warnings on import on platforms where its native Core ML bridge is
absent (every non-macOS machine) and may warn about the installed torch version; none
of that concerns us, so it is silenced here, once. Everything in mlupdated that needs
the spec classes imports them from this module.
"""

from __future__ import annotations

import logging
import warnings

logging.getLogger("coremltools").setLevel(logging.ERROR)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from coremltools.proto import (  # noqa: E402
        FeatureTypes_pb2,
        Model_pb2,
        NearestNeighbors_pb2,
        NeuralNetwork_pb2,
    )

__all__ = ["FeatureTypes_pb2", "Model_pb2", "NearestNeighbors_pb2", "NeuralNetwork_pb2"]
