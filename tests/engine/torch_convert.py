"""Convert a small PyTorch module to a Core ML neural network (iOS 13 backend), the
way users do, for engine tests of what coremltools actually emits."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from mlupdated.coreml import proto  # noqa: F401  (quiet coremltools import)


def convert_module(module: torch.nn.Module, shape: tuple[int, ...]) -> Any:
    """The spec of ``module`` traced on a ``shape`` tensor, with a multi-array input
    named ``x``; its output feature is the network's last blob."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        import coremltools as ct

        traced = torch.jit.trace(module.eval(), torch.rand(*shape))
        mlmodel = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=shape)],
            convert_to="neuralnetwork",
            minimum_deployment_target=ct.target.iOS13,
        )
    return mlmodel.get_spec()


def layer_types(spec: Any) -> set[str]:
    return {layer.WhichOneof("layer") for layer in spec.neuralNetwork.layers}
