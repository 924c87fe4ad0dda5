"""``crop`` in its two forms (amounts; reference blob and offset) against NumPy slicing."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, build_spec, rng, run_one_layer, run_spec


@pytest.mark.parametrize(
    ("top", "bottom", "left", "right"), [(0, 0, 0, 0), (1, 2, 3, 0), (0, 3, 0, 1), (2, 2, 2, 2)]
)
def test_crop_by_amounts(top: int, bottom: int, left: int, right: int) -> None:
    x = rng(top + 2 * left).standard_normal((2, 3, 8, 9)).astype(np.float32)

    def add(builder):
        builder.add_crop("c", left, right, top, bottom, [0, 0], ["x"], "y")

    y = run_one_layer(add, {"x": (3, 8, 9)}, {"x": x})
    assert_close(y, x[:, :, top : 8 - bottom, left : 9 - right])


@pytest.mark.parametrize(
    ("offset", "ref_hw"), [((0, 0), (8, 9)), ((2, 1), (5, 4)), ((3, 0), (1, 9))]
)
def test_crop_to_a_reference_blob_at_an_offset(offset, ref_hw) -> None:
    g = rng(offset[0] * 7 + ref_hw[0])
    x = g.standard_normal((2, 3, 8, 9)).astype(np.float32)
    ref = g.standard_normal((2, 5, *ref_hw)).astype(np.float32)

    def add(builder):
        builder.add_crop("c", 0, 0, 0, 0, list(offset), ["x", "ref"], "y")

    spec = build_spec({"x": (3, 8, 9), "ref": (5, *ref_hw)}, ["y"], add)
    y = run_spec(spec, {"x": x, "ref": ref})["y"]
    oh, ow = offset
    assert_close(y, x[:, :, oh : oh + ref_hw[0], ow : ow + ref_hw[1]])


def test_crop_resize_is_refused_by_name() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        builder.add_crop_resize("cr", ["x", "roi"], "y", target_height=2, target_width=2)

    spec = build_spec({"x": (1, 1, 3, 8, 8), "roi": (1, 1, 4, 1, 1)}, ["y"], add, nd=True)
    with pytest.raises(UnsupportedLayerError, match="'cr'.*cropResize"):
        run_spec(spec, {"x": np.zeros((1, 1, 3, 8, 8)), "roi": np.zeros((1, 1, 4, 1, 1))})
