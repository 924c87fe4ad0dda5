"""Core ML's sequence axis: classic blobs are rank-5 ``[Seq, B, C, H, W]`` in Core ML.
``permute`` can move Seq among C, H, W (style-transfer and Keras models do), and a
rank-5-mapped input can be fed as a sequence. Checked against NumPy written the way
the NeuralNetwork.proto comment defines the layers, per example."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session

from .helpers import assert_close, build_spec, rng, run_one_layer

N = 2


def _coreml_permute(x5: np.ndarray, axes) -> np.ndarray:
    """Core ML's permute on ``[N, Seq, C, H, W]`` (the batch never moves)."""
    return x5.transpose(0, *(1 + a for a in axes))


def _engine_form(y5: np.ndarray) -> np.ndarray:
    """How the engine writes a classic blob: a sequence of one as ``[N, C, H, W]``."""
    return y5[:, 0] if y5.shape[1] == 1 else y5


@pytest.mark.parametrize("axes", list(itertools.permutations(range(4))))
def test_permute_every_order(axes) -> None:
    x = rng(1).standard_normal((N, 2, 3, 4)).astype(np.float32)
    got = run_one_layer(lambda b: b.add_permute("p", axes, "x", "y"), {"x": (2, 3, 4)}, {"x": x})
    assert_close(got, _engine_form(_coreml_permute(x[:, None], axes)))


def test_permute_there_and_back_is_the_identity() -> None:
    x = rng(2).standard_normal((N, 3, 5, 1)).astype(np.float32)

    def add(b) -> None:
        b.add_permute("there", (2, 1, 0, 3), "x", "t")
        b.add_permute("back", (2, 1, 0, 3), "t", "y")

    got = run_one_layer(add, {"x": (3, 5, 1)}, {"x": x})
    assert_close(got, x)


def _style_mixer(b) -> None:
    """The pattern of a style-transfer model that mixes per-style parameters by a
    style vector fed as a sequence: constant [C, S, 1] → Seq = S, scaled by the
    style, Seq and C swapped, summed over C (the styles), swapped back."""
    table = rng(3).standard_normal((3, 6, 1)).astype(np.float32)
    b.add_load_constant("table", "table", table, table.shape)
    b.add_permute("to_seq", (2, 1, 0, 3), "table", "per_style")
    b.add_elementwise("scaled", ["style", "per_style"], "scaled", "MULTIPLY")
    b.add_permute("swap", (1, 0, 2, 3), "scaled", "swapped")
    b.add_reduce("sum", "swapped", "summed", "C", "sum")
    b.add_permute("unswap", (1, 0, 2, 3), "summed", "mixed")
    b.add_elementwise("y", ["mixed", "x"], "y", "ADD")


def _style_mixer_reference(style5: np.ndarray, x: np.ndarray) -> np.ndarray:
    table = rng(3).standard_normal((3, 6, 1)).astype(np.float32)
    per_style = _coreml_permute(table[None, None], (2, 1, 0, 3))  # [1, 6, 3, 1, 1]
    scaled = style5 * per_style
    summed = _coreml_permute(scaled, (1, 0, 2, 3)).sum(axis=2, keepdims=True)
    mixed = _coreml_permute(summed, (1, 0, 2, 3))
    return _engine_form(mixed + x[:, None])


def test_a_style_vector_fed_as_a_sequence_mixes_the_styles() -> None:
    spec = build_spec({"style": (1, 1, 1), "x": (3, 4, 4)}, ["y"], _style_mixer)
    style = rng(4).uniform(size=(N, 6, 1, 1, 1)).astype(np.float32)
    x = rng(5).standard_normal((N, 3, 4, 4)).astype(np.float32)
    model = compile_network(spec, outputs=["y"], sequences={"style": 6})
    got = Session(model).run({"style": style, "x": x})["y"]
    assert_close(got, _style_mixer_reference(style, x))


def test_a_style_of_one_element_scales_the_summed_styles() -> None:
    """Fed as declared ([1, 1, 1], a sequence of one), the same network runs too."""
    spec = build_spec({"style": (1, 1, 1), "x": (3, 4, 4)}, ["y"], _style_mixer)
    style = rng(6).uniform(size=(N, 1, 1, 1)).astype(np.float32)
    x = rng(7).standard_normal((N, 3, 4, 4)).astype(np.float32)
    got = Session(compile_network(spec, outputs=["y"])).run({"style": style, "x": x})["y"]
    assert_close(got, _style_mixer_reference(style[:, None], x))


def test_a_vector_input_fed_as_a_sequence() -> None:
    """A ``[C]`` input as a sequence is ``[N, Seq, C]`` fed, ``[N, Seq, C, 1, 1]`` read."""
    spec = build_spec({"x": (4,)}, ["y"], lambda b: b.add_permute("p", (2, 1, 0, 3), "x", "y"))
    x = rng(8).standard_normal((N, 5, 4)).astype(np.float32)
    got = Session(compile_network(spec, sequences={"x": 5})).run({"x": x})["y"]
    assert_close(got, _engine_form(_coreml_permute(x[:, :, :, None, None], (2, 1, 0, 3))))


def test_a_sequence_for_an_unknown_input_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    spec = build_spec({"x": (4,)}, ["y"], lambda b: b.add_copy("c", "x", "y"))
    with pytest.raises(InvalidModelError, match="'nope'"):
        compile_network(spec, sequences={"nope": 3})


def test_inner_product_and_flatten_apply_to_each_step() -> None:
    """A sequence (here from a permute) through flatten and innerProduct: Core ML
    applies both to each step's C, H, W; compared with torch's Linear per step."""
    import torch

    w = rng(9).standard_normal((5, 6)).astype(np.float32)
    b = rng(10).standard_normal(5).astype(np.float32)

    def add(bl) -> None:
        bl.add_permute("to_seq", (2, 1, 0, 3), "x", "seq")  # [N, H=4, C=3, 1, W=2]
        bl.add_flatten("flat", 1, "seq", "flat")  # channel-last: W then C per step
        bl.add_inner_product("fc", w, b, 6, 5, True, "flat", "y")

    x = rng(11).standard_normal((N, 3, 4, 2)).astype(np.float32)
    got = run_one_layer(add, {"x": (3, 4, 2)}, {"x": x})
    steps = x.transpose(0, 2, 3, 1).reshape(N, 4, 6)  # per step (h): w-major, c-minor
    want = torch.nn.functional.linear(
        torch.from_numpy(steps), torch.from_numpy(w), torch.from_numpy(b)
    )
    assert_close(got, want.numpy()[..., None, None])


def test_an_inner_product_of_the_wrong_width_is_refused_naming_it() -> None:
    from mlupdated.errors import InvalidModelError

    w = np.ones((2, 8), dtype=np.float32)
    spec = build_spec(
        {"x": (4,)}, ["y"], lambda b: b.add_inner_product("fc", w, None, 8, 2, False, "x", "y")
    )
    with pytest.raises(InvalidModelError, match="'fc'.*4 values per example.*take 8"):
        compile_network(spec)
