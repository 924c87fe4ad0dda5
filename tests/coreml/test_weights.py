"""Weight decoding against coremltools' own quantization and de-quantization."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlupdated.coreml import weights as W
from mlupdated.coreml.proto import Model_pb2, NeuralNetwork_pb2
from mlupdated.errors import InvalidModelError

IN_CH, OUT_CH, SIDE, HIDDEN = 4, 8, 6, 10


def _float_model():
    """A small spec with every quantizable weight kind we decode: convolution,
    deconvolution, batchnorm, innerProduct (all with bias)."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    rng = np.random.default_rng(42)
    builder = NeuralNetworkBuilder(
        [("x", datatypes.Array(IN_CH, SIDE, SIDE))], [("y", datatypes.Array(HIDDEN))]
    )
    builder.add_convolution(
        "conv", IN_CH, OUT_CH, 3, 3, 1, 1, "same", 1,
        W=rng.normal(size=(3, 3, IN_CH, OUT_CH)).astype(np.float32),
        b=rng.normal(size=OUT_CH).astype(np.float32), has_bias=True,
        input_name="x", output_name="c",
    )  # fmt: skip
    builder.add_activation("act", "RELU", "c", "r")
    builder.add_convolution(
        "deconv", OUT_CH, IN_CH, 3, 3, 1, 1, "valid", 1,
        W=rng.normal(size=(3, 3, IN_CH, OUT_CH)).astype(np.float32),
        b=rng.normal(size=IN_CH).astype(np.float32), has_bias=True, is_deconv=True,
        output_shape=(SIDE + 2, SIDE + 2), input_name="r", output_name="d",
    )  # fmt: skip
    builder.add_activation("act2", "RELU", "d", "d2")
    builder.add_batchnorm(
        "bn", IN_CH,
        gamma=rng.uniform(0.5, 2, IN_CH), beta=rng.normal(size=IN_CH),
        mean=rng.normal(size=IN_CH), variance=rng.uniform(0.5, 2, IN_CH),
        input_name="d2", output_name="b",
    )  # fmt: skip
    builder.add_flatten("flat", 0, "b", "f")
    flat = IN_CH * (SIDE + 2) ** 2
    builder.add_inner_product(
        "dense", W=rng.normal(size=(HIDDEN, flat)).astype(np.float32),
        b=rng.normal(size=HIDDEN).astype(np.float32), input_channels=flat,
        output_channels=HIDDEN, has_bias=True, input_name="f", output_name="y",
    )  # fmt: skip
    return ct.models.MLModel(builder.spec, skip_model_load=True)


def _blobs(spec: Model_pb2.Model):
    """(layer name, field, params, count, shape, channel axis) of every weight blob."""
    out = []
    for layer in spec.neuralNetwork.layers:
        kind = layer.WhichOneof("layer")
        if kind == "convolution":
            c = layer.convolution
            kh, kw = c.kernelSize
            if c.isDeconvolution:
                shape, axis = (c.kernelChannels, c.outputChannels // c.nGroups, kh, kw), 1
            else:
                shape, axis = (c.outputChannels, c.kernelChannels, kh, kw), 0
            out.append((layer.name, "weights", c.weights, int(np.prod(shape)), shape, axis))
            out.append((layer.name, "bias", c.bias, c.outputChannels, None, 0))
        elif kind == "innerProduct":
            p = layer.innerProduct
            shape = (p.outputChannels, p.inputChannels)
            out.append((layer.name, "weights", p.weights, int(np.prod(shape)), shape, 0))
            out.append((layer.name, "bias", p.bias, p.outputChannels, None, 0))
        elif kind == "batchnorm":
            for name in ("gamma", "beta", "mean", "variance"):
                out.append((layer.name, name, getattr(layer.batchnorm, name), IN_CH, None, 0))
    return out


@pytest.fixture(scope="module")
def float_model():
    return _float_model()


def _kmeans_lut(nbits, weights):
    """A k-means lookup table (Lloyd's algorithm in NumPy, deterministic).

    coremltools 9's own "kmeans" mode needs scikit-learn and then hands the protobuf
    a (n, 1) table, which fails; the table goes in through "custom_lut" instead."""
    flat = np.asarray(weights, np.float64).reshape(-1)
    k = 1 << nbits
    centres = np.quantile(flat, (np.arange(k) + 0.5) / k)
    for _ in range(25):
        labels = np.abs(flat[:, None] - centres[None, :]).argmin(axis=1)
        for j in range(k):
            if np.any(labels == j):
                centres[j] = flat[labels == j].mean()
    labels = np.abs(flat[:, None] - centres[None, :]).argmin(axis=1)
    return centres, labels


def _quantize(model, nbits, mode):
    from coremltools.models.neural_network import quantization_utils as qu

    extra = {}
    if mode == "kmeans":
        mode, extra = "custom_lut", {"lut_function": _kmeans_lut}
    with contextlib.redirect_stdout(io.StringIO()):
        return qu.quantize_weights(model, nbits, quantization_mode=mode, **extra).get_spec()


def _coremltools_dequantized(qspec: Model_pb2.Model) -> Model_pb2.Model:
    from coremltools.models.neural_network import quantization_utils as qu

    copy = Model_pb2.Model()
    copy.CopyFrom(qspec)
    with contextlib.redirect_stdout(io.StringIO()):
        qu._dequantize_nn_spec(copy.neuralNetwork)
    return copy


def test_float32_weights_decode_exactly(float_model):
    spec = float_model.get_spec()
    for name, field, params, count, _, _ in _blobs(spec):
        values = W.decode_weights(params, count=count, layer=name)
        assert values.dtype == np.float32 and values.shape == (count,), (name, field)
        np.testing.assert_array_equal(values, np.asarray(params.floatValue, np.float32))


def test_float16_weights_equal_half_precision_originals(float_model):
    original = float_model.get_spec()
    half = _quantize(float_model, 16, "linear")
    for (name, field, params, count, _, _), (_, _, orig, _, _, _) in zip(
        _blobs(half), _blobs(original), strict=True
    ):
        assert params.float16Value and not len(params.floatValue), (name, field)
        expected = np.asarray(orig.floatValue, np.float32).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(W.decode_weights(params, count=count, layer=name), expected)


QUANT_CASES = [(n, "linear") for n in range(1, 9)]
QUANT_CASES += [(n, "linear_lut") for n in (1, 2, 3, 5, 8)]
QUANT_CASES += [(n, "kmeans") for n in (2, 4, 6)]
QUANT_CASES += [(8, "linear_symmetric")]


@pytest.mark.parametrize(("nbits", "mode"), QUANT_CASES)
def test_quantized_weights_match_coremltools_dequantization(float_model, nbits, mode):
    qspec = _quantize(float_model, nbits, mode)
    reference = _coremltools_dequantized(qspec)
    original = float_model.get_spec()
    quantized_fields = 0
    for (name, field, params, count, shape, axis), (_, _, deq, _, _, _), (_, _, orig, *_) in zip(
        _blobs(qspec), _blobs(reference), _blobs(original), strict=True
    ):
        ours = W.decode_weights(params, count=count, layer=name, shape=shape, channel_axis=axis)
        expected = np.asarray(deq.floatValue, np.float32)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6, err_msg=f"{name}.{field}")
        if params.HasField("quantization"):
            quantized_fields += 1
            assert params.quantization.numberOfBits == nbits
            # Sanity: de-quantized values approximate the float originals.
            span = np.ptp(np.asarray(orig.floatValue)) or 1.0
            assert np.max(np.abs(ours - np.asarray(orig.floatValue))) <= span
    assert quantized_fields >= 6


def test_bit_packing_is_most_significant_bit_first():
    from coremltools.models.neural_network import quantization_utils as qu

    rng = np.random.default_rng(3)
    for nbits in range(1, 9):
        values = rng.integers(0, 1 << nbits, 37)
        theirs = qu._convert_array_to_nbit_quantized_bytes(values.astype(np.uint8), nbits)
        theirs = theirs.tobytes()
        assert W.pack_bits(values, nbits=nbits) == theirs
        unpacked = W.unpack_bits(np.frombuffer(theirs, np.uint8), nbits=nbits, count=37)
        np.testing.assert_array_equal(unpacked, values)


def _lut_params(values, nbits, table):
    params = NeuralNetwork_pb2.WeightParams()
    params.rawValue = W.pack_bits(values, nbits=nbits)
    params.quantization.numberOfBits = nbits
    params.quantization.lookupTableQuantization.floatValue.extend(table)
    return params


def test_lookup_table_by_hand():
    table = np.linspace(-1, 1, 8).astype(np.float32)
    idx = np.array([0, 7, 3, 3, 5, 1, 2])
    params = _lut_params(idx, 3, table)
    np.testing.assert_array_equal(W.decode_weights(params, count=7), table[idx])


def test_int8_raw_values_with_linear_scale():
    q = np.array([-128, -1, 0, 1, 127], dtype=np.int8)
    params = NeuralNetwork_pb2.WeightParams()
    params.int8RawValue = q.tobytes()
    params.quantization.numberOfBits = 8
    params.quantization.linearQuantization.scale.append(0.5)
    np.testing.assert_array_equal(W.decode_weights(params, count=5), q.astype(np.float32) * 0.5)


def test_raw_float32_bytes():
    values = np.array([1.5, -2.25, 3.0], dtype="<f4")
    params = NeuralNetwork_pb2.WeightParams(rawValue=values.tobytes())
    np.testing.assert_array_equal(W.decode_weights(params, count=3), values)


def test_empty_params_decode_to_nothing():
    assert W.decode_weights(NeuralNetwork_pb2.WeightParams(), count=None).size == 0
    assert W.decode_weights(NeuralNetwork_pb2.WeightParams(), count=0).size == 0


@pytest.mark.parametrize(
    ("make", "count", "match"),
    [
        (lambda: NeuralNetwork_pb2.WeightParams(floatValue=[1.0, 2.0]), 3, "hold 2 values"),
        (lambda: NeuralNetwork_pb2.WeightParams(), 4, "hold 0 values"),
        (lambda: NeuralNetwork_pb2.WeightParams(float16Value=b"\x00\x3c\x00"), None, "odd"),
        (lambda: NeuralNetwork_pb2.WeightParams(rawValue=b"\x00" * 5), None, "multiple of 4"),
        (
            lambda: NeuralNetwork_pb2.WeightParams(floatValue=[1.0], float16Value=b"\x00\x3c"),
            None,
            "several encodings",
        ),
        (lambda: _lut_params([1, 2, 3], 3, np.zeros(4)), 3, "lookup table has 4"),
        (lambda: _lut_params([1, 2, 3], 3, np.zeros(8)), 30, "at most"),
        (lambda: _lut_params(list(range(8)) * 3, 3, np.zeros(8)), 8, "bytes"),
    ],
    ids=[
        "float-count",
        "missing",
        "f16-odd",
        "raw-len",
        "two-encodings",
        "lut-size",
        "too-few",
        "too-many-bytes",
    ],
)
def test_broken_blobs_name_the_layer(make, count, match):
    with pytest.raises(InvalidModelError, match=match) as info:
        W.decode_weights(make(), count=count, layer="dense_5")
    assert info.value.layer == "dense_5"
    assert "dense_5" in str(info.value)


def test_bits_out_of_range():
    params = _lut_params([1], 3, np.zeros(8))
    params.quantization.numberOfBits = 9
    with pytest.raises(InvalidModelError, match="1 to 8"):
        W.decode_weights(params, count=1, layer="c")


def test_linear_channels_must_divide():
    params = NeuralNetwork_pb2.WeightParams(rawValue=bytes(range(10)))
    params.quantization.numberOfBits = 8
    params.quantization.linearQuantization.scale.extend([1.0, 2.0, 3.0])
    params.quantization.linearQuantization.bias.extend([0.0, 0.0, 0.0])
    with pytest.raises(InvalidModelError, match="3 quantization channels"):
        W.decode_weights(params, count=10, layer="c")


def test_encode_float32_and_replace(float_model):
    qspec = _quantize(float_model, 4, "linear")
    params = qspec.neuralNetwork.layers[-1].innerProduct.weights
    params.isUpdatable = True
    new = np.arange(6, dtype=np.float32)
    W.replace_weights(params, new)
    assert list(params.floatValue) == new.tolist()
    assert params.isUpdatable
    assert not params.rawValue and not params.float16Value and not params.HasField("quantization")
    fresh = W.encode_float32(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert list(fresh.floatValue) == [1.0, 2.0, 3.0, 4.0] and not fresh.isUpdatable


@settings(max_examples=60, deadline=None)
@given(
    nbits=st.integers(1, 8),
    data=st.data(),
)
def test_pack_unpack_round_trip(nbits, data):
    values = data.draw(st.lists(st.integers(0, (1 << nbits) - 1), min_size=1, max_size=50))
    packed = W.pack_bits(values, nbits=nbits)
    assert len(packed) == (len(values) * nbits + 7) // 8
    unpacked = W.unpack_bits(np.frombuffer(packed, np.uint8), nbits=nbits, count=len(values))
    assert unpacked.tolist() == values


@pytest.mark.parametrize(("nbits", "mode"), [(3, "linear"), (8, "linear"), (4, "linear_lut")])
def test_decode_layer_weights_knows_each_layout(float_model, nbits, mode):
    qspec = _quantize(float_model, nbits, mode)
    reference = {
        layer.name: layer for layer in _coremltools_dequantized(qspec).neuralNetwork.layers
    }
    for layer in qspec.neuralNetwork.layers:
        kind = layer.WhichOneof("layer")
        if kind not in ("convolution", "innerProduct"):
            continue
        shape, axis = W.weight_layout(layer)
        assert axis == (1 if layer.convolution.isDeconvolution else 0)
        for field in ("weights", "bias"):
            ours = W.decode_layer_weights(layer, field)
            expected = np.asarray(getattr(getattr(reference[layer.name], kind), field).floatValue)
            expected_shape = shape if field == "weights" else (W.weight_layout(layer, "bias")[0])
            assert ours.shape == expected_shape
            np.testing.assert_allclose(ours.reshape(-1), expected, rtol=1e-6, atol=1e-6)


def test_weight_layout_of_unknown_type():
    layer = NeuralNetwork_pb2.NeuralNetworkLayer(name="act")
    layer.activation.ReLU.SetInParent()
    with pytest.raises(InvalidModelError, match="layer 'act'"):
        W.weight_layout(layer)
