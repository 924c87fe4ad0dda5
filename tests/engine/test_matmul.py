"""``batchedMatmul`` with two blobs (transposes, broadcasting) and with stored weights
(plus bias, float16 and quantized storage), against torch.matmul."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from .helpers import assert_close, build_spec, rng, run_one_layer, run_spec


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((1, 3, 4), (1, 4, 5)), ((1, 2, 3, 4), (1, 2, 4, 6)), ((1, 2, 3, 4), (1, 4, 2))],
)
def test_two_input_matmul(transpose_a: bool, transpose_b: bool, shape_a, shape_b) -> None:
    g = rng(len(shape_a) * 4 + len(shape_b) + 2 * transpose_a + transpose_b)
    a = g.standard_normal((3, *shape_a[1:])).astype(np.float32)
    b = g.standard_normal((3, *shape_b[1:])).astype(np.float32)
    if transpose_a:
        a = np.swapaxes(a, -1, -2).copy()
    if transpose_b:
        b = np.swapaxes(b, -1, -2).copy()
    in_a, in_b = (1, *a.shape[1:]), (1, *b.shape[1:])

    def add(builder):
        builder.add_batched_mat_mul(
            "mm", ["a", "b"], "y", transpose_a=transpose_a, transpose_b=transpose_b
        )

    spec = build_spec({"a": in_a, "b": in_b}, ["y"], add, nd=True)
    y = run_spec(spec, {"a": a, "b": b})["y"]
    ta, tb = torch.from_numpy(a).double(), torch.from_numpy(b).double()
    if transpose_a:
        ta = ta.transpose(-1, -2)
    if transpose_b:
        tb = tb.transpose(-1, -2)
    # Core ML's result, one example at a time (each with its batch of one in front).
    expected = torch.cat([torch.matmul(ta[i : i + 1], tb[i : i + 1]) for i in range(3)])
    assert_close(y, expected.numpy())


def test_two_input_matmul_with_a_constant_matrix() -> None:
    g = rng(30)
    value = g.standard_normal((4, 5)).astype(np.float32)
    x = g.standard_normal((3, 2, 4)).astype(np.float32)

    def add(builder):
        builder.add_load_constant_nd("w", "w", value, shape=[4, 5])
        builder.add_batched_mat_mul("mm", ["x", "w"], "y")

    spec = build_spec({"x": (1, 2, 4)}, ["y"], add, nd=True)
    assert_close(run_spec(spec, {"x": x})["y"], x @ value)


@pytest.mark.parametrize("shape", [(1, 6), (1, 3, 6), (1, 2, 3, 6)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_with_stored_weights(shape, with_bias: bool) -> None:
    g = rng(len(shape) + 10 * with_bias)
    weights = g.standard_normal((6, 5)).astype(np.float32)
    bias = g.standard_normal(5).astype(np.float32)
    x = g.standard_normal((2, *shape[1:])).astype(np.float32)

    def add(builder):
        builder.add_batched_mat_mul(
            "mm",
            ["x"],
            "y",
            weight_matrix_rows=6,
            weight_matrix_columns=5,
            W=weights,
            bias=bias if with_bias else None,
        )

    y = run_one_layer(add, {"x": shape}, {"x": x}, nd=True)
    expected = torch.matmul(torch.from_numpy(x).double(), torch.from_numpy(weights).double())
    if with_bias:
        expected = expected + torch.from_numpy(bias).double()
    assert_close(y, expected.numpy())


def test_matmul_with_float16_weights() -> None:
    g = rng(20)
    weights = g.standard_normal((4, 3)).astype(np.float16)
    x = g.standard_normal((2, 4)).astype(np.float32)

    def add(builder):
        layer = builder.add_batched_mat_mul(
            "mm", ["x"], "y", weight_matrix_rows=4, weight_matrix_columns=3, W=weights
        )
        # Stored transposed, as float16 bytes.
        del layer.batchedMatmul.weights.floatValue[:]
        layer.batchedMatmul.weights.float16Value = weights.T.astype(np.float16).tobytes()

    y = run_one_layer(add, {"x": (1, 4)}, {"x": x}, nd=True)
    assert_close(y, x @ weights.astype(np.float32))


def test_matmul_with_8bit_linear_quantized_weights() -> None:
    g = rng(21)
    rows, cols = 6, 4
    q = g.integers(0, 256, size=(rows, cols), dtype=np.uint8)
    scale = g.uniform(0.01, 0.05, size=cols).astype(np.float32)
    offset = g.uniform(-1, 1, size=cols).astype(np.float32)
    x = g.standard_normal((3, rows)).astype(np.float32)

    def add(builder):
        builder.add_batched_mat_mul(
            "mm",
            ["x"],
            "y",
            weight_matrix_rows=rows,
            weight_matrix_columns=cols,
            W=q.tobytes(),
            is_quantized_weight=True,
            quantization_type="linear",
            nbits=8,
            quant_scale=scale,
            quant_bias=offset,
        )

    y = run_one_layer(add, {"x": (1, rows)}, {"x": x}, nd=True)
    # Per output column: w = scale * q + bias.
    weights = q.astype(np.float64) * scale + offset
    assert_close(y, x.astype(np.float64) @ weights)


def test_rank_one_operand_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        builder.add_batched_mat_mul(
            "mm",
            ["x"],
            "y",
            weight_matrix_rows=1,
            weight_matrix_columns=3,
            W=np.ones((1, 3), np.float32),
        )

    with pytest.raises(UnsupportedLayerError, match="'mm'"):
        run_one_layer(add, {"x": (1,)}, {"x": np.ones((1,), np.float32)}, nd=True)


class _Sequence(torch.nn.Module):
    """A linear layer over a sequence, then a product with a fixed matrix."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.linear = torch.nn.Linear(6, 4)
        self.register_buffer("mix", torch.randn(4, 3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.linear(x), self.mix)


def test_matmuls_as_coremltools_converts_them() -> None:
    from mlupdated.coreml import proto  # noqa: F401  (quiets coremltools first)

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    module = _Sequence().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

        traced = torch.jit.trace(module, torch.zeros(1, 2, 5, 6))
        spec = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=(1, 2, 5, 6))],
            convert_to="neuralnetwork",
            minimum_deployment_target=ct.target.iOS13,
        ).get_spec()
    assert "batchedMatmul" in [layer.WhichOneof("layer") for layer in spec.neuralNetwork.layers]
    x = rng(40).standard_normal((3, 2, 5, 6)).astype(np.float32)
    (y,) = run_spec(spec, {"x": x}).values()
    with torch.no_grad():
        assert_close(y, module(torch.from_numpy(x)).numpy())


def test_int8_dynamic_quantization_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        layer = builder.add_batched_mat_mul(
            "mm",
            ["x"],
            "y",
            weight_matrix_rows=2,
            weight_matrix_columns=2,
            W=np.ones((2, 2), np.float32),
        )
        layer.batchedMatmul.int8DynamicQuantize = True

    with pytest.raises(UnsupportedLayerError, match="'mm'.*int8DynamicQuantize"):
        run_one_layer(add, {"x": (1, 2)}, {"x": np.ones((1, 2), np.float32)}, nd=True)
