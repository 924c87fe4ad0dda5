"""Decode the weight blobs of a neural-network spec into float32 arrays, and back.

A ``WeightParams`` message holds its numbers in one of several encodings:
``floatValue`` (float32), ``float16Value`` (little-endian half floats as bytes),
``rawValue`` (little-endian float32 bytes, or packed n-bit integers when
``quantization`` is set), or ``int8RawValue`` (signed 8-bit with a linear scale).
Quantized integers are packed most-significant bit first, each value's bits from its
highest to its lowest, as coremltools writes them; they are mapped back through a
lookup table or a per-channel ``value = q * scale + bias``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InvalidModelError
from .proto import NeuralNetwork_pb2

WeightParams = NeuralNetwork_pb2.WeightParams

MIN_QUANT_BITS = 1
MAX_QUANT_BITS = 8


def decode_weights(
    params: WeightParams,
    *,
    count: int | None,
    layer: str | None = None,
    shape: tuple[int, ...] | None = None,
    channel_axis: int = 0,
) -> np.ndarray:
    """Return the values of ``params`` as a 1-D float32 array.

    ``count`` is the number of values the layer needs (``None``: take what is
    stored; give it for packed n-bit weights, whose last byte may hold padding).
    For per-channel linear quantization the channels run along axis ``channel_axis``
    of ``shape`` (default: the first axis of ``(channels, count // channels)``;
    deconvolution weights use axis 1 of their 4-D shape: pass it, or use
    :func:`decode_layer_weights`, which knows each layer's layout). A wrong count or
    a broken encoding raises ``InvalidModelError`` naming ``layer``.
    """
    where = f"layer '{layer}': " if layer is not None else ""
    encodings = _present_encodings(params)
    if len(encodings) > 1:
        raise InvalidModelError(
            f"{where}weights are stored in several encodings at once ({', '.join(encodings)})",
            layer=layer,
        )
    encoding = encodings[0] if encodings else None
    if encoding is None:
        values = np.zeros(0, dtype=np.float32)
    elif encoding == "floatValue":
        values = np.asarray(params.floatValue, dtype=np.float32)
    elif encoding == "float16Value":
        values = _decode_float16(params.float16Value, where=where, layer=layer)
    elif encoding == "int8RawValue":
        values = _decode_int8(params, count=count, where=where, layer=layer)
    elif params.HasField("quantization"):
        values = _decode_quantized(
            params, count=count, where=where, layer=layer, shape=shape, channel_axis=channel_axis
        )
    else:
        values = _decode_raw_float32(params.rawValue, where=where, layer=layer)
    if count is not None and values.size != count:
        raise InvalidModelError(
            f"{where}weights hold {values.size} values, the layer needs {count}", layer=layer
        )
    return values


def _present_encodings(params: WeightParams) -> list[str]:
    present = []
    if len(params.floatValue):
        present.append("floatValue")
    if params.float16Value:
        present.append("float16Value")
    if params.rawValue:
        present.append("rawValue")
    if params.int8RawValue:
        present.append("int8RawValue")
    return present


def _decode_float16(data: bytes, *, where: str, layer: str | None) -> np.ndarray:
    if len(data) % 2:
        raise InvalidModelError(
            f"{where}float16 weights have an odd number of bytes ({len(data)})", layer=layer
        )
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def _decode_raw_float32(data: bytes, *, where: str, layer: str | None) -> np.ndarray:
    if len(data) % 4:
        raise InvalidModelError(
            f"{where}raw float32 weights have {len(data)} bytes, not a multiple of 4",
            layer=layer,
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _decode_int8(
    params: WeightParams, *, count: int | None, where: str, layer: str | None
) -> np.ndarray:
    q = np.frombuffer(params.int8RawValue, dtype=np.int8).astype(np.float32)
    if not params.HasField("quantization"):
        return q
    quant = params.quantization
    if quant.WhichOneof("QuantizationType") != "linearQuantization":
        raise InvalidModelError(
            f"{where}int8 weights need linear quantization parameters", layer=layer
        )
    return _apply_linear(q, quant.linearQuantization, where=where, layer=layer)


def _decode_quantized(
    params: WeightParams,
    *,
    count: int | None,
    where: str,
    layer: str | None,
    shape: tuple[int, ...] | None,
    channel_axis: int,
) -> np.ndarray:
    quant = params.quantization
    nbits = quant.numberOfBits
    if not MIN_QUANT_BITS <= nbits <= MAX_QUANT_BITS:
        raise InvalidModelError(
            f"{where}quantized weights use {nbits} bits; Core ML allows 1 to 8", layer=layer
        )
    data = np.frombuffer(params.rawValue, dtype=np.uint8)
    available = data.size * 8 // nbits
    n = available if count is None else count
    if n > available:
        raise InvalidModelError(
            f"{where}quantized weights hold at most {available} values of {nbits} bits, "
            f"the layer needs {count}",
            layer=layer,
        )
    if count is not None and (count * nbits + 7) // 8 != data.size:
        raise InvalidModelError(
            f"{where}quantized weights have {data.size} bytes; {count} values of "
            f"{nbits} bits need {(count * nbits + 7) // 8}",
            layer=layer,
        )
    q = unpack_bits(data, nbits=nbits, count=n)
    which = quant.WhichOneof("QuantizationType")
    if which == "lookupTableQuantization":
        table = np.asarray(quant.lookupTableQuantization.floatValue, dtype=np.float32)
        if table.size != 1 << nbits:
            raise InvalidModelError(
                f"{where}lookup table has {table.size} entries; {nbits}-bit weights need "
                f"{1 << nbits}",
                layer=layer,
            )
        return table[q]
    if which == "linearQuantization":
        return _apply_linear(
            q.astype(np.float32),
            quant.linearQuantization,
            where=where,
            layer=layer,
            shape=shape,
            channel_axis=channel_axis,
        )
    raise InvalidModelError(
        f"{where}quantized weights have neither a lookup table nor linear parameters",
        layer=layer,
    )


def _apply_linear(
    q: np.ndarray,
    linear: NeuralNetwork_pb2.LinearQuantizationParams,
    *,
    where: str,
    layer: str | None,
    shape: tuple[int, ...] | None = None,
    channel_axis: int = 0,
) -> np.ndarray:
    scale = np.asarray(linear.scale, dtype=np.float32)
    bias = np.asarray(linear.bias, dtype=np.float32)
    if scale.size == 0:
        raise InvalidModelError(f"{where}linear quantization has no scale", layer=layer)
    if bias.size == 0:
        bias = np.zeros(1, dtype=np.float32)
    channels = max(scale.size, bias.size)
    for name, vec in (("scale", scale), ("bias", bias)):
        if vec.size not in (1, channels):
            raise InvalidModelError(
                f"{where}linear quantization {name} has {vec.size} values, expected 1 or "
                f"{channels}",
                layer=layer,
            )
    if channels == 1:
        return (q * scale[0] + bias[0]).astype(np.float32)
    if shape is None:
        if q.size % channels:
            raise InvalidModelError(
                f"{where}{q.size} weights do not split into {channels} quantization channels",
                layer=layer,
            )
        shape, channel_axis = (channels, q.size // channels), 0
    if int(np.prod(shape)) != q.size or shape[channel_axis] != channels:
        raise InvalidModelError(
            f"{where}{channels} quantization channels do not match weight shape {shape}",
            layer=layer,
        )
    bshape = [1] * len(shape)
    bshape[channel_axis] = channels
    scale_b = np.broadcast_to(scale, (channels,)).reshape(bshape)
    bias_b = np.broadcast_to(bias, (channels,)).reshape(bshape)
    out = q.reshape(shape) * scale_b + bias_b
    return out.astype(np.float32).reshape(-1)


def weight_layout(layer: object, field: str = "weights") -> tuple[tuple[int, ...], int]:
    """The (shape, channel axis) of a layer's weight blob as Core ML lays it out.

    The channel axis is the one per-channel linear quantization runs along (what
    coremltools uses when it quantizes): axis 1 for deconvolution weights, axis 0
    otherwise. Biases and other vectors are 1-D. Raises ``InvalidModelError`` for a
    layer type this does not know.
    """
    kind = layer.WhichOneof("layer")  # type: ignore[attr-defined]
    name = layer.name  # type: ignore[attr-defined]
    body = getattr(layer, kind) if kind else None
    if kind == "convolution":
        c = body
        kh, kw = (tuple(int(k) for k in c.kernelSize) or (3, 3))[:2]
        out, kc, groups = int(c.outputChannels), int(c.kernelChannels), int(c.nGroups) or 1
        if field == "bias":
            return (out,), 0
        if c.isDeconvolution:
            return (kc, out // groups, kh, kw), 1
        return (out, kc, kh, kw), 0
    if kind in ("innerProduct", "embedding"):
        out = int(body.outputChannels)
        inner = int(body.inputChannels if kind == "innerProduct" else body.inputDim)
        return ((out,), 0) if field == "bias" else ((out, inner), 0)
    if kind == "batchedMatmul":
        rows = int(body.weightMatrixFirstDimension)
        cols = int(body.weightMatrixSecondDimension)
        return ((cols,), 0) if field == "bias" else ((cols, rows), 0)
    raise InvalidModelError(f"layer '{name}': no known weight layout for type '{kind}'", layer=name)


def decode_layer_weights(layer: object, field: str = "weights") -> np.ndarray:
    """Decode ``layer.<type>.<field>`` with the right count, shape and channel axis;
    return it reshaped to Core ML's layout (see :func:`weight_layout`)."""
    shape, axis = weight_layout(layer, field)
    params = getattr(getattr(layer, layer.WhichOneof("layer")), field)  # type: ignore[attr-defined]
    count = int(np.prod(shape))
    values = decode_weights(
        params,
        count=count,
        layer=layer.name,
        shape=shape,
        channel_axis=axis,  # type: ignore[attr-defined]
    )
    return values.reshape(shape)


def unpack_bits(data: np.ndarray, *, nbits: int, count: int) -> np.ndarray:
    """Unpack ``count`` unsigned ``nbits``-bit integers packed MSB first (as coremltools)."""
    if nbits == 8:
        return data[:count].astype(np.int64)
    bits = np.unpackbits(data, bitorder="big")[: count * nbits].reshape(count, nbits)
    powers = 1 << np.arange(nbits - 1, -1, -1, dtype=np.int64)
    return bits.astype(np.int64) @ powers


def pack_bits(values: Iterable[int], *, nbits: int) -> bytes:
    """Pack unsigned ``nbits``-bit integers MSB first, zero-padded to whole bytes."""
    q = np.asarray(list(values), dtype=np.int64)
    if nbits == 8:
        return q.astype(np.uint8).tobytes()
    shifts = np.arange(nbits - 1, -1, -1, dtype=np.int64)
    bits = ((q[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bits, bitorder="big").tobytes()


def encode_float32(
    values: np.ndarray | Iterable[float], *, is_updatable: bool = False
) -> WeightParams:
    """A ``WeightParams`` holding ``values`` as float32 ``floatValue`` and nothing else.

    ``is_updatable`` is carried over so that trained weights stay updatable.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    params = WeightParams()
    params.floatValue.extend(flat.tolist())
    if is_updatable:
        params.isUpdatable = True
    return params


def replace_weights(params: WeightParams, values: np.ndarray | Iterable[float]) -> None:
    """Overwrite ``params`` in place with float32 ``values``, keeping ``isUpdatable``."""
    params.CopyFrom(encode_float32(values, is_updatable=params.isUpdatable))
