"""A batch of image files decoded on several threads: the same tensors, in order, with
each unreadable file's error in its place."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml.proto import FeatureTypes_pb2
from mlupdated.engine import decoding
from mlupdated.errors import ImageError
from PIL import Image

TARGET = FeatureTypes_pb2.ImageFeatureType(
    width=16, height=12, colorSpace=FeatureTypes_pb2.ImageFeatureType.RGB
)


def _files(directory: Path) -> list[str]:
    rng = np.random.default_rng(5)
    paths = []
    for index in range(7):
        path = directory / f"photo{index}.jpg"
        if index == 3:
            path.write_bytes(b"not an image")
        else:
            pixels = rng.integers(0, 256, (40 + index, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def _decode(paths: list[str], workers: int) -> list[np.ndarray | ImageError]:
    return decoding.decode_batch(
        paths, TARGET, resize="scaleFill", max_pixels=10**8, workers=workers
    )


def test_several_threads_give_the_same_tensors_in_order(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    alone, together = _decode(paths, 1), _decode(paths, 3)
    assert len(alone) == len(together) == len(paths)
    for one, other in zip(alone, together, strict=True):
        if isinstance(one, ImageError):
            assert isinstance(other, ImageError) and other.reason == one.reason
        else:
            np.testing.assert_array_equal(one, other)
    assert isinstance(together[3], ImageError) and "photo3.jpg" in str(together[3])
    assert together[0].shape == (3, 12, 16)


def test_files_really_decode_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two decodes must be under way at once to get past the barrier; one at a time, the
    # first would wait for the second until the barrier breaks.
    barrier = threading.Barrier(2, timeout=10)
    real = decoding.load_tensor

    def meeting(*args: object, **kwargs: object) -> np.ndarray:
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(decoding, "load_tensor", meeting)
    paths = [p for p in _files(tmp_path) if not p.endswith("photo3.jpg")][:2]
    assert all(isinstance(t, np.ndarray) for t in _decode(paths, 2))


def test_workers_follow_the_threads_a_run_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding.os, "cpu_count", lambda: 6)
    assert decoding.decode_workers(0) == 6
    assert decoding.decode_workers(1) == 1
