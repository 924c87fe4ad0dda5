"""``slice``, ``sliceStatic``, ``split`` and ``splitND`` against NumPy indexing."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import assert_close, build_spec, rng, run_one_layer, run_spec

_AXES = {"channel": 1, "height": 2, "width": 3}


@pytest.mark.parametrize("axis", list(_AXES))
@pytest.mark.parametrize(
    ("start", "end", "stride"),
    [(0, -1, 1), (1, 5, 2), (2, 100, 1), (0, -2, 3), (3, 4, 1), (1, -4, 1)],
)
def test_classic_slice_is_numpy_slicing(axis: str, start: int, end: int, stride: int) -> None:
    x = rng(start * 10 + stride).standard_normal((2, 6, 7, 8)).astype(np.float32)

    def add(builder):
        builder.add_slice("s", "x", "y", axis=axis, start_index=start, end_index=end, stride=stride)

    y = run_one_layer(add, {"x": (6, 7, 8)}, {"x": x})
    index = [slice(None)] * 4
    index[_AXES[axis]] = slice(start, end, stride)
    assert_close(y, x[tuple(index)])


def _random_slices(g: np.random.Generator, shape: tuple[int, ...]):
    """A random NumPy slice per non-batch axis, as sliceStatic parameters."""
    # The batch axis is kept whole.
    params = {
        "begin_ids": [0],
        "end_ids": [1],
        "strides": [1],
        "begin_masks": [True],
        "end_masks": [True],
    }
    objects = [slice(None)]
    for size in shape[1:]:
        while True:
            stride = int(g.choice([-3, -1, 1, 2]))
            begin_mask, end_mask = bool(g.integers(2)), bool(g.integers(2))
            begin, end = int(g.integers(-size, size)), int(g.integers(-size, size))
            obj = slice(None if begin_mask else begin, None if end_mask else end, stride)
            if len(range(size)[obj]):
                break
        objects.append(obj)
        params["begin_ids"].append(begin)
        params["end_ids"].append(end)
        params["strides"].append(stride)
        params["begin_masks"].append(begin_mask)
        params["end_masks"].append(end_mask)
    return params, tuple(objects)


@pytest.mark.parametrize("seed", range(12))
def test_slice_static_is_numpy_slicing(seed: int) -> None:
    g = rng(seed)
    shape = (1, *[int(v) for v in g.integers(2, 7, size=int(g.integers(1, 4)))])
    params, objects = _random_slices(g, shape)
    x = g.standard_normal((3, *shape[1:])).astype(np.float32)

    def add(builder):
        builder.add_slice_static("s", "x", "y", **params)

    y = run_one_layer(add, {"x": shape}, {"x": x}, nd=True)
    assert_close(y, x[objects])


def test_slice_static_squeeze_mask_takes_one_index_and_drops_the_axis() -> None:
    x = rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)

    def add(builder):
        builder.add_slice_static(
            "s",
            "x",
            "y",
            begin_ids=[0, 1, -1, 2],
            end_ids=[1, 3, 0, 0],
            strides=[1, 1, 1, 1],
            begin_masks=[True, False, False, False],
            end_masks=[True, False, False, False],
            squeeze_masks=[False, False, True, True],
        )

    y = run_one_layer(add, {"x": (1, 4, 5, 6)}, {"x": x}, nd=True)
    assert_close(y, x[:, 1:3, -1, 2])


def test_slice_static_that_empties_the_batch_axis_is_refused() -> None:
    from mlupdated.errors import UnsupportedLayerError

    def add(builder):
        builder.add_slice_static(
            "s",
            "x",
            "y",
            begin_ids=[1, 0],
            end_ids=[2, 3],
            strides=[1, 1],
            begin_masks=[False, True],
            end_masks=[False, True],
        )

    with pytest.raises(UnsupportedLayerError, match="batch axis"):
        run_one_layer(add, {"x": (1, 3)}, {"x": np.zeros((1, 3), np.float32)}, nd=True)


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_split_cuts_channels_evenly(parts: int) -> None:
    x = rng(parts).standard_normal((2, 6, 3, 4)).astype(np.float32)
    names = [f"y{i}" for i in range(parts)]

    def add(builder):
        builder.add_split("s", "x", names)

    spec = build_spec({"x": (6, 3, 4)}, names, add)
    out = run_spec(spec, {"x": x})
    for name, expected in zip(names, np.split(x, parts, axis=1), strict=True):
        assert_close(out[name], expected)


@pytest.mark.parametrize(
    ("axis", "num_splits", "sizes"),
    [(1, 2, None), (-1, 3, None), (2, 2, [1, 4]), (-2, 3, [2, 2, 1])],
)
def test_split_nd(axis: int, num_splits: int, sizes) -> None:
    x = rng(abs(axis) + num_splits).standard_normal((2, 4, 5, 6)).astype(np.float32)
    count = len(sizes) if sizes else num_splits
    names = [f"y{i}" for i in range(count)]

    def add(builder):
        builder.add_split_nd("s", "x", names, axis=axis, num_splits=num_splits, split_sizes=sizes)

    spec = build_spec({"x": (1, 4, 5, 6)}, names, add, nd=True)
    out = run_spec(spec, {"x": x})
    cuts = np.cumsum(sizes)[:-1] if sizes else num_splits
    for name, expected in zip(names, np.split(x, cuts, axis=axis), strict=True):
        assert_close(out[name], expected)


def test_split_into_unequal_channel_groups_is_refused() -> None:
    from mlupdated.errors import InvalidModelError

    def add(builder):
        builder.add_split("s", "x", ["a", "b"])

    spec = build_spec({"x": (5, 2, 2)}, ["a", "b"], add)
    with pytest.raises(InvalidModelError, match="'s'.*equal parts"):
        run_spec(spec, {"x": np.ones((1, 5, 2, 2), np.float32)})
