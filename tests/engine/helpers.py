"""Shared helpers for engine tests: build small specs with coremltools'
NeuralNetworkBuilder, run them through the engine, compare with a reference.

Signatures here are stable (other test files rely on them):

* ``build_spec(inputs, outputs, add_layers, *, nd=False) -> spec``
* ``run_spec(spec, feeds, *, outputs=None) -> dict[str, np.ndarray]``
* ``run_one_layer(add_layer, inputs, feeds, *, nd=False, output="y") -> np.ndarray``
* ``assert_close(actual, expected, *, atol=ATOL)``
* ``rng(seed=0) -> np.random.Generator``
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from mlupdated.coreml import proto  # noqa: F401  (silences coremltools before importing it)
from mlupdated.engine.compile import compile_network
from mlupdated.engine.runtime import Session

ATOL = 1e-4

logging.getLogger("coremltools").setLevel(logging.ERROR)


def rng(seed: int = 0) -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(seed)


def build_spec(
    inputs: Mapping[str, Sequence[int]],
    outputs: Sequence[str],
    add_layers: Callable[[Any], None],
    *,
    nd: bool = False,
) -> Any:
    """A neural-network spec with multi-array ``inputs`` (name → shape) whose layers are
    added by ``add_layers(builder)``.

    ``nd=False``: classic rank-5 mapping, shapes are ``[C]`` or ``[C, H, W]`` without
    the batch, fed as ``[N, *shape]``. ``nd=True``: exact mapping (spec v4), shapes
    include the batch axis first (write 1 there), fed with the batch there.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder

        builder = NeuralNetworkBuilder(
            [(name, datatypes.Array(*shape)) for name, shape in inputs.items()],
            [(name, None) for name in outputs],
            disable_rank5_shape_mapping=nd,
        )
        add_layers(builder)
    return builder.spec


def run_spec(
    spec: Any, feeds: Mapping[str, np.ndarray], *, outputs: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Compile ``spec`` with the engine and run it on ``feeds`` (batched arrays)."""
    model = compile_network(spec, outputs=outputs)
    return Session(model).run({k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})


def run_one_layer(
    add_layer: Callable[[Any], None],
    inputs: Mapping[str, Sequence[int]],
    feeds: Mapping[str, np.ndarray],
    *,
    nd: bool = False,
    output: str = "y",
) -> np.ndarray:
    """Build a spec whose layers ``add_layer(builder)`` adds, producing blob ``output``;
    run it on ``feeds``; return that blob."""
    spec = build_spec(inputs, [output], add_layer, nd=nd)
    return run_spec(spec, feeds, outputs=[output])[output]


def assert_close(actual: np.ndarray, expected: np.ndarray, *, atol: float = ATOL) -> None:
    """Same shape and max abs error ≤ ``atol``."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    err = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    assert err <= atol, f"max abs error {err:.3g} > {atol}"
