"""Image loading: every format, EXIF orientations, bad files, bombs, huge photos."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml import images
from mlupdated.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from PIL import Image, features

ORIENTATION_TAG = 0x0112


def pattern(width: int = 48, height: int = 32, *, smooth: bool = False) -> np.ndarray:
    """An RGB test picture; ``smooth`` for lossy codecs (gradients, no noise)."""
    y, x = np.mgrid[0:height, 0:width]
    if smooth:
        r = x * 255 // max(width - 1, 1)
        g = y * 255 // max(height - 1, 1)
        b = np.full_like(x, 96)
    else:
        rng = np.random.default_rng(width * 1000 + height)
        r, g, b = (rng.integers(0, 256, (height, width)) for _ in range(3))
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def save(array: np.ndarray, path: Path, fmt: str, **options) -> Path:
    Image.fromarray(array).save(path, fmt, **options)
    return path


def loaded_array(path: Path, **kwargs) -> np.ndarray:
    img = images.load_image(path, **kwargs)
    try:
        return np.asarray(img.convert("RGB"))
    finally:
        img.close()


# --- formats -----------------------------------------------------------------------------

LOSSLESS = [
    ("PNG", {}),
    ("WEBP", {"lossless": True}),
    ("TIFF", {}),
    ("BMP", {}),
]


@pytest.mark.parametrize(("fmt", "options"), LOSSLESS, ids=[f for f, _ in LOSSLESS])
def test_lossless_formats_decode_exactly(tmp_path, fmt, options):
    source = pattern()
    path = save(source, tmp_path / f"img.{fmt.lower()}", fmt, **options)
    np.testing.assert_array_equal(loaded_array(path), source)


def test_gif_palette_decodes_exactly(tmp_path):
    palette_image = Image.fromarray(pattern()).quantize(colors=64)
    path = tmp_path / "img.gif"
    palette_image.save(path, "GIF")
    np.testing.assert_array_equal(loaded_array(path), np.asarray(palette_image.convert("RGB")))


def lossy_writers():
    writers = [("JPEG", {"quality": 95})]
    if features.check("avif"):
        writers.append(("AVIF", {"quality": 95}))
    return writers


@pytest.mark.parametrize(("fmt", "options"), lossy_writers(), ids=lambda v: str(v))
def test_lossy_formats_decode_close(tmp_path, fmt, options):
    source = pattern(64, 48, smooth=True)
    path = save(source, tmp_path / f"img.{fmt.lower()}", fmt, **options)
    decoded = loaded_array(path)
    assert decoded.shape == source.shape
    assert np.abs(decoded.astype(int) - source).mean() < 4


def test_avif_available_here():
    # The AVIF case above runs only where Pillow writes AVIF; say so if it does not.
    assert features.check("avif"), "this Pillow cannot write AVIF: the AVIF test did not run"


def test_heic_via_pillow_heif(tmp_path):
    import pillow_heif

    source = pattern(64, 48, smooth=True)
    heif = pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=source.tobytes())
    path = tmp_path / "photo.HEIC"
    heif.save(path, quality=95)
    decoded = loaded_array(path)
    assert decoded.shape == source.shape
    assert np.abs(decoded.astype(int) - source).mean() < 4


def test_heic_without_pillow_heif(tmp_path, monkeypatch):
    import pillow_heif

    source = pattern(16, 16, smooth=True)
    path = tmp_path / "photo.heic"
    pillow_heif.from_bytes(mode="RGB", size=(16, 16), data=source.tobytes()).save(path)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.setattr(images, "_heif_registered", False)
    with pytest.raises(UnsupportedImageError, match="HEIC needs pillow-heif"):
        images.load_image(path)


def test_format_is_sniffed_not_taken_from_extension(tmp_path):
    source = pattern(32, 32, smooth=True)
    jpeg_named_heic = save(source, tmp_path / "IMG_0001.HEIC", "JPEG", quality=95)
    assert images.load_image(jpeg_named_heic).format == "JPEG"
    png_named_jpg = save(source, tmp_path / "picture.jpg", "PNG")
    np.testing.assert_array_equal(loaded_array(png_named_jpg), source)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_first_frame_of_animations(tmp_path, fmt):
    frames = [Image.fromarray(np.full((20, 30, 3), value, np.uint8)) for value in (10, 200, 90)]
    path = tmp_path / f"anim.{fmt.lower()}"
    options = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    decoded = loaded_array(path)
    assert np.abs(decoded.astype(int) - 10).max() <= 1


def test_first_page_of_multipage_tiff(tmp_path):
    pages = [Image.fromarray(pattern(24, 16)), Image.fromarray(pattern(30, 20))]
    path = tmp_path / "pages.tiff"
    pages[0].save(path, "TIFF", save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(loaded_array(path), pattern(24, 16))


# --- EXIF orientation --------------------------------------------------------------------


def manual_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for EXIF orientation 1..8, in plain NumPy."""
    return {
        1: lambda: a,
        2: lambda: a[:, ::-1],
        3: lambda: a[::-1, ::-1],
        4: lambda: a[::-1, :],
        5: lambda: a.transpose(1, 0, 2),
        6: lambda: np.rot90(a, -1),
        7: lambda: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda: np.rot90(a, 1),
    }[orientation]()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation(tmp_path, orientation, fmt):
    source = pattern(40, 24)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    path = save(source, tmp_path / f"o{orientation}.{fmt.lower()}", fmt, exif=exif.tobytes())
    with Image.open(path) as raw:  # the stored pixels, before orientation
        stored = np.asarray(raw.convert("RGB"))
    img = images.load_image(path)
    np.testing.assert_array_equal(
        np.asarray(img.convert("RGB")), manual_orientation(stored, orientation)
    )
    assert img.getexif().get(ORIENTATION_TAG, 1) == 1


# --- bad files ---------------------------------------------------------------------------


def test_missing(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        images.load_image(tmp_path / "gone.jpg")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty file") as info:
        images.load_image(path)
    assert info.value.path == str(path)


def test_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my holiday notes\n" * 20)
    with pytest.raises(ImageDecodeError, match="not an image"):
        images.load_image(path)


def test_directory(tmp_path):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        images.load_image(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        images.load_image(fifo)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated(tmp_path, fmt):
    full = save(pattern(64, 64), tmp_path / f"full.{fmt.lower()}", fmt)
    data = full.read_bytes()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="corrupt|truncated") as info:
        images.load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_png_data(tmp_path):
    data = bytearray(save(pattern(), tmp_path / "ok.png", "PNG").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = b"\xff" * 20  # breaks the chunk's CRC and its zlib data
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="corrupt"):
        images.load_image(path)


def test_corrupt_header(tmp_path):
    data = bytearray(save(pattern(), tmp_path / "ok.png", "PNG").read_bytes())
    data[16:24] = b"\x00" * 8  # width and height zero, CRC wrong
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError):
        images.load_image(path)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``x``height`` grayscale, with a tiny body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_from_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning may leak
        with pytest.raises(ImageTooLargeError, match="10000000000 pixels"):
            images.load_image(path)


def test_max_pixels_keyword(tmp_path):
    path = save(pattern(40, 30), tmp_path / "small.png", "PNG")
    with pytest.raises(ImageTooLargeError, match="limit of 1000"):
        images.load_image(path, max_pixels=1000)
    assert images.load_image(path, max_pixels=1200).size == (40, 30)


def test_our_limit_not_pillows(tmp_path, monkeypatch):
    # Shrink Pillow's own bounds below the image: Pillow alone would warn and refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = save(pattern(40, 30), tmp_path / "img.png", "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(loaded_array(path), pattern(40, 30))
        with pytest.raises(ImageTooLargeError):
            images.load_image(path, max_pixels=150)
    assert Image.MAX_IMAGE_PIXELS == 100


# --- a 100-megapixel photo ---------------------------------------------------------------

BIG_W, BIG_H = 12_000, 8_400
BIG_COLOUR = (40, 120, 200)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "IMG_BIG.jpg"
    img = Image.new("RGB", (BIG_W, BIG_H), BIG_COLOUR)
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    img.paste(Image.fromarray(noise), (0, 0))
    img.save(path, "JPEG", quality=90)
    img.close()
    return path


def test_hundred_megapixel_jpeg_loads_with_bounded_memory(big_jpeg):
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from mlupdated.coreml import images
        from mlupdated.coreml.proto import FeatureTypes_pb2 as F
        image_type = F.ImageFeatureType(width=64, height=48, colorSpace=F.ImageFeatureType.RGB)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tensor = images.load_tensor(sys.argv[1], image_type, max_pixels={BIG_W * BIG_H + 1})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"before_kb": before, "after_kb": after, "shape": tensor.shape,
                          "centre": tensor[:, 24, 32].tolist()}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(big_jpeg)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    grown_mb = (report["after_kb"] - report["before_kb"]) / 1024
    peak_mb = report["after_kb"] / 1024
    # A full decode needs 12000*8400*4 bytes = 384 MiB on top of the imports.
    assert grown_mb < 150, f"decoding grew the peak RSS by {grown_mb:.0f} MiB"
    assert peak_mb < 1536, f"peak RSS {peak_mb:.0f} MiB"
    assert report["shape"] == [3, 48, 64]
    assert np.allclose(report["centre"], BIG_COLOUR, atol=3)


def test_small_jpeg_not_drafted(tmp_path):
    # Below DRAFT_FROM_PIXELS the decode is exact (no DCT scaling).
    path = save(pattern(64, 64, smooth=True), tmp_path / "small.jpg", "JPEG")
    with Image.open(path) as plain:
        expected = np.asarray(plain.convert("RGB"))
    np.testing.assert_array_equal(loaded_array(path, target_size=(8, 8)), expected)


def test_heic_orientation_applied_once(tmp_path):
    import pillow_heif

    a = np.zeros((32, 64, 3), np.uint8)
    a[:8, :16] = 255  # marker at the top left of the stored pixels
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    heif = pillow_heif.from_bytes(mode="RGB", size=(64, 32), data=a.tobytes())
    path = tmp_path / "rotated.heic"
    heif.save(path, exif=exif.tobytes(), quality=95)
    shown = loaded_array(path)
    expected = manual_orientation(a, 6)  # rotated 90° clockwise: marker at the top right
    assert shown.shape == expected.shape
    np.testing.assert_array_equal(shown[..., 0] > 128, expected[..., 0] > 128)


def test_large_jpeg_is_drafted_for_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "DRAFT_FROM_PIXELS", 10_000)
    jpeg = save(pattern(400, 300, smooth=True), tmp_path / "large.jpg", "JPEG", quality=95)
    img = images.load_image(jpeg, target_size=(20, 10))
    # DCT scaling by 1/2, 1/4 or 1/8, never below twice the target's larger side.
    assert img.size in {(200, 150), (100, 75)}, img.size
    assert images.load_image(jpeg).size == (400, 300)  # no target: full size
    png = save(pattern(400, 300, smooth=True), tmp_path / "large.png", "PNG")
    assert images.load_image(png, target_size=(20, 10)).size == (400, 300)


def test_phone_size_jpeg_is_drafted_and_stays_close_to_the_exact_decode(tmp_path):
    """A 12-megapixel photo (a phone's) is decoded at a reduced scale for a 224×224
    input; after the resize its pixels are within a few levels of a full decode's."""
    from mlupdated.coreml.proto import FeatureTypes_pb2
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((4032, 3024), Image.Resampling.BICUBIC)
    path = tmp_path / "phone.jpg"
    photo.save(path, quality=90)
    assert 4032 * 3024 >= images.DRAFT_FROM_PIXELS
    assert images.load_image(path, target_size=(224, 224)).size == (1008, 756)  # 1/4
    target = FeatureTypes_pb2.ImageFeatureType(
        width=224, height=224, colorSpace=FeatureTypes_pb2.ImageFeatureType.RGB
    )
    drafted = images.load_tensor(path, target)
    with Image.open(path) as full:
        exact = np.asarray(
            full.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.float32
        ).transpose(2, 0, 1)
    difference = np.abs(drafted - exact)
    assert difference.max() <= 6 and difference.mean() < 1.0, (difference.max(), difference.mean())
