"""Networks whose weights coremltools stored as float16 or quantized (linear per
channel, k-means lookup table, 1..8 bits) run like the same networks de-quantized by
coremltools itself."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings

import numpy as np
import pytest
import torch

from .helpers import assert_close, rng, run_spec
from .torch_convert import convert_module


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.deconv = torch.nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.fc = torch.nn.Linear(6 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.deconv(torch.relu(self.conv(x)))).flatten(1))


@pytest.fixture(scope="module")
def float_spec():
    return convert_module(Net().eval(), (1, 3, 4, 4))


def _quantize(spec, nbits: int, mode: str):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        from coremltools.models import MLModel
        from coremltools.models.neural_network import quantization_utils as qu

        kwargs = {"lut_function": _uniform_lut} if mode == "custom_lut" else {}
        quantized = qu.quantize_weights(MLModel(copy.deepcopy(spec)), nbits, mode, **kwargs)
        q_spec = quantized.get_spec() if hasattr(quantized, "get_spec") else quantized
        reference = copy.deepcopy(q_spec)
        if nbits == 16:
            _float16_to_float32(reference)
        else:
            qu._dequantize_nn_spec(reference.neuralNetwork)
    return q_spec, reference


def _uniform_lut(nbits: int, weights: np.ndarray):
    """A lookup table of evenly spaced values and each weight's nearest entry."""
    lut = np.linspace(weights.min(), weights.max(), 2**nbits).astype(np.float32)
    indices = np.abs(weights.reshape(-1, 1) - lut.reshape(1, -1)).argmin(axis=1)
    return lut, indices.astype(np.uint8)


def _float16_to_float32(spec) -> None:
    for layer in spec.neuralNetwork.layers:
        params = getattr(layer, layer.WhichOneof("layer"))
        for field in ("weights", "bias"):
            if params.DESCRIPTOR.fields_by_name.get(field) is None or not params.HasField(field):
                continue
            wp = getattr(params, field)
            if wp.float16Value:
                values = np.frombuffer(wp.float16Value, dtype="<f2").astype(np.float32)
                wp.ClearField("float16Value")
                wp.floatValue.extend(values.tolist())


@pytest.mark.parametrize(
    ("nbits", "mode"),
    [
        (16, "linear"),
        (8, "linear"),
        (8, "linear_symmetric"),
        (4, "custom_lut"),
        (3, "linear"),
        (1, "linear"),
    ],
)
def test_quantized_network_runs_like_its_dequantized_twin(float_spec, nbits, mode) -> None:
    q_spec, reference = _quantize(float_spec, nbits, mode)
    weights = q_spec.neuralNetwork.layers[0].convolution.weights
    assert not len(weights.floatValue)  # really stored in another encoding
    x = rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = q_spec.description.output[0].name
    got = run_spec(q_spec, {"x": x})[out]
    want = run_spec(reference, {"x": x})[out]
    assert_close(got, want, atol=1e-4)
