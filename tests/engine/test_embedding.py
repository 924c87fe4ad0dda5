"""``embedding`` and ``embeddingND`` against ``torch.nn.functional.embedding``: the
table and bias written by NeuralNetworkBuilder, indices fed as floats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session

from .helpers import assert_close, build_spec, rng, run_one_layer

N, VOCAB, WIDTH = 4, 7, 5


def _table(seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = rng(seed)
    return (
        g.standard_normal((WIDTH, VOCAB)).astype(np.float32),
        g.standard_normal(WIDTH).astype(np.float32),
    )


def _torch(indices: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    out = torch.nn.functional.embedding(
        torch.from_numpy(indices.astype(np.int64)), torch.from_numpy(w.T)
    )
    if b is not None:
        out = out + torch.from_numpy(b)
    return out.numpy()


@pytest.mark.parametrize("has_bias", [False, True])
def test_embedding(has_bias: bool) -> None:
    w, b = _table(1)
    idx = rng(2).integers(0, VOCAB, size=N)
    got = run_one_layer(
        lambda bl: bl.add_embedding(
            "e", w, b if has_bias else None, VOCAB, WIDTH, has_bias, "x", "y"
        ),
        {"x": (1,)},
        {"x": idx.reshape(N, 1).astype(np.float32)},
    )
    expected = _torch(idx, w, b if has_bias else None)
    assert_close(got, expected.reshape(N, WIDTH, 1, 1))


def test_embedding_of_a_sentence_fed_as_a_sequence() -> None:
    """Keras converters write embeddings over a sequence: [Seq, 1, 1, 1, 1] indices."""
    w, b = _table(3)
    spec = build_spec(
        {"x": (1,)}, ["y"], lambda bl: bl.add_embedding("e", w, b, VOCAB, WIDTH, True, "x", "y")
    )
    idx = rng(4).integers(0, VOCAB, size=(N, 6))
    model = compile_network(spec, sequences={"x": 6})
    got = Session(model).run({"x": idx.reshape(N, 6, 1).astype(np.float32)})["y"]
    assert_close(got, _torch(idx, w, b).reshape(N, 6, WIDTH, 1, 1))


@pytest.mark.parametrize("shape", [(1, 1), (1, 3, 1), (1, 2, 3, 1)])
@pytest.mark.parametrize("has_bias", [False, True])
def test_embedding_nd(shape, has_bias: bool) -> None:
    w, b = _table(5)
    idx = rng(6).integers(0, VOCAB, size=(N, *shape[1:]))
    got = run_one_layer(
        lambda bl: bl.add_embedding_nd("e", "x", "y", VOCAB, WIDTH, w, b if has_bias else None),
        {"x": shape},
        {"x": idx.astype(np.float32)},
        nd=True,
    )
    expected = _torch(idx[..., 0], w, b if has_bias else None)
    assert_close(got, expected)
