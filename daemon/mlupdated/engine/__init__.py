"""The portable engine: Core ML neural networks compiled to ONNX and run by
onnxruntime; k-NN and pipelines around them (see ``predictor``).

The public names are imported lazily so that importing a submodule (the registry,
the compiler) does not load the whole engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compile import compile_network
    from .graph_cache import load_session
    from .predictor import Prediction, PredictionFailure, Predictor
    from .runtime import Session

__all__ = [
    "Prediction",
    "PredictionFailure",
    "Predictor",
    "Session",
    "compile_network",
    "load_session",
]

_HOMES = {
    "compile_network": "compile",
    "Session": "runtime",
    "load_session": "graph_cache",
    "Predictor": "predictor",
    "Prediction": "predictor",
    "PredictionFailure": "predictor",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
