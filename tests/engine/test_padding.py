"""padding (constant / reflection / replication) and constantPad against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from .helpers import assert_close, rng, run_one_layer

SHAPE = (3, 5, 6)


@pytest.mark.parametrize(
    ("kind", "torch_mode"),
    [("constant", "constant"), ("reflection", "reflect"), ("replication", "replicate")],
)
def test_padding_layer(kind: str, torch_mode: str) -> None:
    x = rng().standard_normal((2, *SHAPE)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_padding(
            "pad",
            left=1,
            right=3,
            top=2,
            bottom=0,
            value=2.5,
            input_name="x",
            output_name="y",
            padding_type=kind,
        ),
        {"x": SHAPE},
        {"x": x},
    )
    kwargs = {"value": 2.5} if torch_mode == "constant" else {}
    expected = F.pad(torch.from_numpy(x), (1, 3, 2, 0), mode=torch_mode, **kwargs)
    assert_close(got, expected.numpy())


@pytest.mark.parametrize("amounts", [[0, 0, 1, 2], [1, 1, 0, 2, 3, 0], [2, 1]])
def test_constant_pad(amounts: list[int]) -> None:
    x = rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = run_one_layer(
        lambda b: b.add_constant_pad("pad", ["x"], "y", value=-1.5, pad_amounts=amounts),
        {"x": (1, 3, 4, 5)},
        {"x": x},
        nd=True,
    )
    # torch.nn.functional.pad lists (begin, end) pairs from the last axis backwards.
    pairs = [amounts[i : i + 2] for i in range(0, len(amounts), 2)]
    torch_pads = [v for pair in reversed(pairs) for v in pair]
    expected = F.pad(torch.from_numpy(x), torch_pads, value=-1.5)
    assert_close(got, expected.numpy())
