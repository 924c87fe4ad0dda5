"""Turn image files into model input tensors, as DESIGN.md's inference semantics say.

Loading (:func:`load_image`) is the boundary where Pillow's and the file system's
failures become our errors. It opens only regular files, recognises the format by
content (never by extension), refuses decompression bombs from the header before any
pixel is decoded, takes the first frame of animations and multi-page files, applies
the EXIF orientation, and decodes fully so a truncated file fails here.

Conversion (:func:`image_to_tensor`, in ``image_tensor``) produces float32
``(C, H, W)`` values in 0..255 in the model's colour space and size. Pre-processing
(scale and biases, mean image) is *not* applied: the engine compiles it into the
graph; :func:`preprocessing_for` hands it the spec's parameters.
"""

from __future__ import annotations

import importlib
import os
import stat
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from .image_tensor import (
    LARGE_IMAGE_PIXELS,
    RESIZE_MODES,
    as_multiarray,
    image_input,
    image_size,
    image_to_tensor,
    multiarray_shape,
    preprocessing_for,
)
from .proto import FeatureTypes_pb2

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LARGE_IMAGE_PIXELS",
    "RESIZE_MODES",
    "as_multiarray",
    "image_input",
    "image_size",
    "image_to_tensor",
    "load_image",
    "load_tensor",
    "multiarray_shape",
    "preprocessing_for",
]

# About twice Pillow's warning bound (= Pillow's own error bound): more pixels than
# this is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 178_956_970

# From DRAFT_FROM_PIXELS up (a phone's or a camera's photo), and when the caller says
# what size it needs, a JPEG is decoded at a reduced scale (DCT scaling: 1/2, 1/4 or
# 1/8) never below DRAFT_MARGIN times the model's input in either direction. A
# 12-megapixel photo is then ready for a 224×224 input in a tenth of the time of a
# full decode (9 ms against 85 ms, its pixels within 2 of 255 of the full decode's
# after the resize), and a 100-megapixel one costs a few MB. Other large images are
# shrunk by Image.reduce inside the final resize (see image_tensor). Smaller images are
# decoded and resized exactly.
DRAFT_FROM_PIXELS = 4_000_000
DRAFT_MARGIN = 2

# Formats we decode; anything else Pillow might guess from loose signatures (TGA,
# XPM, ...) is "not an image" here.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "DIB", "GIF", "AVIF", "HEIF")

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}
_HEIF_BRANDS |= {b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_SNIFF_BYTES = 64

_heif_lock = threading.Lock()
_heif_registered = False
# Serialises header parses, during which Pillow's own (process-wide) bomb limit is
# lifted in favour of ours.
_bomb_limit_lock = threading.Lock()


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open, check and fully decode an image file; return the oriented first frame.

    ``target_size`` (width, height) lets a large JPEG (``DRAFT_FROM_PIXELS`` or more)
    be decoded at a reduced scale that is still at least twice that size in both
    directions. Raises
    ``ImageDecodeError`` (missing, not a regular file, empty, truncated, corrupt, not
    an image), ``ImageTooLargeError`` (more than ``max_pixels`` pixels) or
    ``UnsupportedImageError`` (HEIC/AVIF without a decoder).
    """
    p = Path(path)
    handle = _open_regular(p)
    with handle:
        head = handle.read(_SNIFF_BYTES)
        if not head:
            raise ImageDecodeError("empty file", path=p)
        _ensure_decoder(_sniff_container(head), p)
        handle.seek(0)
        img = _open_header(handle, p, max_pixels)
        try:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{width}x{height} image has {width * height} pixels, more than the "
                    f"limit of {max_pixels}",
                    path=p,
                )
            if target_size is not None and width * height >= DRAFT_FROM_PIXELS:
                _request_draft(img, target_size)
            _decode(img, p)
            img = _orient(img, p)
        except BaseException:
            img.close()
            raise
    return img


def load_tensor(
    path: str | os.PathLike[str],
    image_type: FeatureTypes_pb2.ImageFeatureType,
    *,
    resize: str = "scaleFill",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """:func:`load_image` then :func:`image_to_tensor`: float32 ``(C, H, W)``, 0..255."""
    size = image_size(image_type)
    img = load_image(path, max_pixels=max_pixels, target_size=size)
    try:
        return image_to_tensor(img, image_type, resize=resize)
    except UnsupportedImageError as exc:
        raise UnsupportedImageError(exc.reason, path=path) from exc
    finally:
        img.close()


def _open_regular(p: Path):
    try:
        st = os.stat(p)
    except FileNotFoundError as exc:
        raise ImageDecodeError("no such file", path=p) from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot open: {exc.strerror or exc}", path=p) from exc
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or never end; a directory is no image.
        raise ImageDecodeError("not a regular file", path=p)
    if st.st_size == 0:
        raise ImageDecodeError("empty file", path=p)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise ImageDecodeError(f"cannot open: {exc.strerror or exc}", path=p) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageDecodeError("not a regular file", path=p)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _sniff_container(head: bytes) -> str | None:
    """``"heif"`` or ``"avif"`` for an ISO-BMFF image file, else ``None``."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    end = min(max(box_size, 16), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    return None


def _ensure_decoder(container: str | None, p: Path) -> None:
    if container is None:
        return
    if container == "avif" and "AVIF" in Image.OPEN:
        return
    _register_heif(p, container)


def _register_heif(p: Path, container: str) -> None:
    global _heif_registered
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError as exc:
            what = "HEIC" if container == "heif" else "AVIF"
            raise UnsupportedImageError(
                f"{what} needs pillow-heif, which is not installed", path=p
            ) from exc
        pillow_heif.register_heif_opener()
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is not None and "AVIF" not in Image.OPEN:
            register_avif()
        _heif_registered = True
    if container == "avif" and "AVIF" not in Image.OPEN:
        raise UnsupportedImageError("AVIF needs a Pillow built with AVIF support", path=p)


# Pillow's plugin module for each format we decode (HEIF comes from pillow-heif, once a
# HEIC file was seen). Importing just these, not Image.init()'s fifty, saves a one-shot
# command about 35 ms.
_PLUGINS = {
    "JPEG": "JpegImagePlugin",
    "MPO": "MpoImagePlugin",
    "PNG": "PngImagePlugin",
    "WEBP": "WebPImagePlugin",
    "TIFF": "TiffImagePlugin",
    "BMP": "BmpImagePlugin",
    "DIB": "BmpImagePlugin",
    "GIF": "GifImagePlugin",
    "AVIF": "AvifImagePlugin",
}


@lru_cache(maxsize=1)
def _import_plugins() -> None:
    for module in sorted(set(_PLUGINS.values())):
        try:
            importlib.import_module(f"PIL.{module}")
        except ImportError:  # a Pillow too old for the format: it is not decodable
            pass


def _decodable_formats() -> tuple[str, ...]:
    _import_plugins()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _open_header(handle, p: Path, max_pixels: int) -> Image.Image:
    formats = _decodable_formats()
    try:
        with warnings.catch_warnings():
            # Our own limit decides (checked by the caller on the header's size), so
            # Pillow's bound is lifted for the header parse only; Image.open reads no
            # pixels, and the lock keeps concurrent opens from seeing each other's state.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _bomb_limit_lock:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    return Image.open(handle, formats=formats)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"image has more pixels than the limit of {max_pixels}", path=p
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image (unknown or unsupported format)", path=p) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as exc:
        raise ImageDecodeError(f"corrupt image header: {_one_line(exc)}", path=p) from exc


def _request_draft(img: Image.Image, target_size: tuple[int, int]) -> None:
    # Orientation may swap width and height, so ask for the larger side both ways.
    side = max(target_size) * DRAFT_MARGIN
    if img.format in ("JPEG", "MPO"):
        img.draft(img.mode, (side, side))


def _decode(img: Image.Image, p: Path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image frame too large: {_one_line(exc)}", path=p) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("not enough memory to decode the image", path=p) from exc
    except Exception as exc:  # Pillow's decoders raise many types; all mean "bad file".
        raise ImageDecodeError(f"corrupt or truncated image: {_one_line(exc)}", path=p) from exc


def _orient(img: Image.Image, p: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # a broken EXIF block
        raise ImageDecodeError(f"unreadable EXIF orientation: {_one_line(exc)}", path=p) from exc
    return img


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    return text[:200]
