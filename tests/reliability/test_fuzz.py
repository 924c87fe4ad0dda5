"""Fuzzing the two parsers that read untrusted bytes: the image intake and the spec
loader. Mutated bytes of valid files go in; only our error types may come out, within
a deadline (a hang fails the example)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlupdated.coreml.proto import FeatureTypes_pb2
from mlupdated.coreml.spec import load_spec_bytes, save_spec
from mlupdated.errors import MlupdatedError
from PIL import Image

from tests.helpers.updatable_specs import build_updatable_spec
from tests.reliability.harness import scale, write_figures

EXAMPLES = scale(150, 3000)
DEADLINE_MS = 5000
# Small enough that a mutated header cannot make a test allocate gigabytes.
MAX_PIXELS = 4_000_000
COUNTS: dict[str, int] = {"image": 0, "spec": 0}


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 24, 3)).astype(np.uint8))
    seeds = []
    for fmt, mode in [
        ("PNG", "RGB"),
        ("PNG", "P"),
        ("PNG", "RGBA"),
        ("JPEG", "RGB"),
        ("JPEG", "CMYK"),
        ("GIF", "P"),
        ("TIFF", "RGB"),
        ("WEBP", "RGB"),
        ("BMP", "RGB"),
    ]:
        out = io.BytesIO()
        img.convert(mode).save(out, format=fmt)
        seeds.append(out.getvalue())
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(img).save(out, format="HEIF")
    seeds.append(out.getvalue())
    return seeds


SEED_IMAGES = _seed_images()


def _model_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.mlmodel"
        save_spec(build_updatable_spec(input_shape=(3, 16, 16)), path)
        return path.read_bytes()


SEED_MODEL = _model_bytes()


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few byte flips, an insertion, a deletion or a truncation."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


_IMAGE_TYPE = FeatureTypes_pb2.ImageFeatureType(
    width=16, height=16, colorSpace=FeatureTypes_pb2.ImageFeatureType.RGB
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=mutated(SEED_IMAGES))
def test_image_intake_only_raises_our_errors(scratch, data) -> None:
    from mlupdated.coreml.images import load_tensor

    path = scratch / "fuzz.img"
    path.write_bytes(data)
    COUNTS["image"] += 1
    try:
        tensor = load_tensor(path, _IMAGE_TYPE, max_pixels=MAX_PIXELS)
    except MlupdatedError as exc:
        assert "\n" not in str(exc)
        return
    assert tensor.shape == (3, 16, 16)
    assert np.all(np.isfinite(tensor))


@settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(data=mutated([SEED_MODEL]))
def test_spec_loader_only_raises_our_errors(data) -> None:
    COUNTS["spec"] += 1
    try:
        load_spec_bytes(data, path="fuzz.mlmodel")
    except MlupdatedError as exc:
        assert "\n" not in str(exc)


def test_zz_figures() -> None:
    write_figures("fuzz", {"examples": dict(COUNTS), "seed_files": len(SEED_IMAGES) + 1})
