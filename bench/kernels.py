"""Kernels: onnxruntime's own 3×3 convolution against the same convolution written as
Winograd F(2×2, 3×3) in plain ONNX operators, on the 3×3 layers of ResNet-18, at batch 1
and 16; both in onnxruntime with its default options.

Winograd's algorithm does 2.25 times fewer multiplications than a direct convolution
(16 per 2×2 output tile and channel pair instead of 36). Expressed as ONNX operators a
graph compiler could emit, it is: the input transform as a 4×4 convolution with stride 2
over each channel on its own, a transpose, a batched matrix product per tile position,
the output transform as a matrix product, and a transpose back. This section measures
whether that beats onnxruntime's direct kernel (MLAS); it is the kind of rewrite the
engine would need to run ahead of onnxruntime on an export of the same network.
"""

from __future__ import annotations

import numpy as np

from .common import Section, interleaved, median, progress

# (channels in = out, height = width) of ResNet-18's 3×3 stride-1 convolutions with an
# even size (Winograd F(2, 3) tiles the output 2×2).
LAYERS = ((64, 56), (128, 28), (256, 14))
QUICK_LAYERS = ((64, 56),)
BATCHES = (1, 16)
QUICK_BATCHES = (1,)
REPEATS, QUICK_REPEATS = 9, 1
PAUSE_S = 0.1

# Winograd F(2, 3): input transform B^T, kernel transform G, output transform A^T.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def run(*, quick: bool) -> Section:
    """Measure and return the kernels section."""
    section = Section(
        "Kernels (3×3 convolution + bias + ReLU: onnxruntime's Conv vs Winograd in ONNX)",
        (
            "layer",
            "batch",
            "onnxruntime Conv",
            "Winograd F(2,3) graph",
            "Conv / Winograd (median)",
            "spread (min–max)",
            "largest difference",
        ),
    )
    rng = np.random.default_rng(0)
    for channels, size in QUICK_LAYERS if quick else LAYERS:
        weights = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
        bias = rng.standard_normal(channels).astype(np.float32)
        direct = _session(_direct_graph(weights, bias, size))
        winograd = _session(_winograd_graph(weights, bias, size))
        for batch in QUICK_BATCHES if quick else BATCHES:
            x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
            want = direct.run(None, {"x": x})[0]
            got = winograd.run(None, {"x": x})[0]
            progress(f"kernels: {channels}×{size}×{size}, batch {batch}")
            times = interleaved(
                {
                    "direct": lambda x=x, s=direct: s.run(None, {"x": x}),
                    "winograd": lambda x=x, s=winograd: s.run(None, {"x": x}),
                },
                repeats=QUICK_REPEATS if quick else REPEATS,
                inner=max(1, 16 // batch),
                pause=PAUSE_S,
            )
            ratios = [d / w for d, w in zip(times["direct"], times["winograd"], strict=True)]
            section.rows.append(
                (
                    f"{channels}×{size}×{size}",
                    str(batch),
                    f"{median(times['direct']) * 1e3:.2f} ms",
                    f"{median(times['winograd']) * 1e3:.2f} ms",
                    f"{median(ratios):.2f}×",
                    f"{min(ratios):.2f}–{max(ratios):.2f}×",
                    f"{float(np.max(np.abs(want - got))):.1e}",
                )
            )
    section.notes.append(
        "Above 1× the Winograd graph is faster. Both graphs are single layers with the same "
        "weights, run by onnxruntime with its default options (a thread per core, all graph "
        "optimizations), interleaved, each sample after a short pause."
    )
    return section


def _session(model: object) -> object:
    import onnxruntime as ort

    data = model.SerializeToString()  # type: ignore[attr-defined]
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _model(nodes: list, initializers: list, channels: int, size: int) -> object:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _direct_graph(weights: np.ndarray, bias: np.ndarray, size: int) -> object:
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")]
    return _model(nodes, initializers, weights.shape[1], size)


def _winograd_graph(weights: np.ndarray, bias: np.ndarray, size: int) -> object:
    """The same layer as Winograd F(2, 3): every 4×4 input tile (stride 2) is
    transformed, multiplied position by position with the transformed kernels (summed
    over input channels: one matrix product per position) and transformed back to 2×2."""
    from onnx import helper, numpy_helper

    out_c, in_c = weights.shape[:2]
    tiles = size // 2
    input_kernels = np.einsum("au,bv->abuv", _BT, _BT).reshape(16, 1, 4, 4)
    kernels = np.einsum("au,kcuv,bv->abkc", _G, weights.astype(np.float64), _G)
    back = np.einsum("pa,qb->pqab", _AT, _AT).reshape(4, 16)

    def const(value: np.ndarray, name: str, dtype: type = np.float32) -> object:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    initializers = [
        const(input_kernels, "input_kernels"),
        const(kernels.reshape(16, out_c, in_c), "kernels"),
        const(back, "back"),
        const(bias.reshape(1, out_c, 1, 1), "bias"),
        const([-1, 1, size, size], "per_channel", np.int64),
        const([-1, in_c, 16, tiles * tiles], "by_position", np.int64),
        const([-1, 16, out_c * tiles * tiles], "positions", np.int64),
        const([-1, 2, 2, out_c, tiles, tiles], "corners", np.int64),
        const([-1, out_c, size, size], "image", np.int64),
    ]
    node = helper.make_node
    nodes = [
        node("Reshape", ["x", "per_channel"], ["x1"]),
        node("Conv", ["x1", "input_kernels"], ["v"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Reshape", ["v", "by_position"], ["v2"]),
        node("Transpose", ["v2"], ["v3"], perm=[0, 2, 1, 3]),
        node("MatMul", ["kernels", "v3"], ["m"]),
        node("Reshape", ["m", "positions"], ["m2"]),
        node("MatMul", ["back", "m2"], ["o"]),
        node("Reshape", ["o", "corners"], ["o2"]),
        node("Transpose", ["o2"], ["o3"], perm=[0, 3, 4, 1, 5, 2]),
        node("Reshape", ["o3", "image"], ["o4"]),
        node("Add", ["o4", "bias"], ["c"]),
        node("Relu", ["c"], ["y"]),
    ]
    return _model(nodes, initializers, in_c, size)
