"""Thumbnails of workspace photos: made with Pillow (EXIF orientation applied), cached
in the cache directory under the photo's content hash, so a renamed photo keeps its
thumbnail and a changed one gets a new one."""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import ImageDecodeError
from ..fsutil import atomic_write_bytes
from ..paths import cache_dir
from .files import WebError, open_regular

THUMB_SIZE = 360
JPEG_QUALITY = 82
# Decoding stops here: a thumbnail never needs a decompression bomb's pixels.
MAX_PIXELS = 200_000_000
CACHE_FOLDER = "thumbnails"

_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if _heif_registered:
        return
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    _heif_registered = True


def thumbnail(source: Path, sha256: str, *, size: int = THUMB_SIZE) -> bytes:
    """The JPEG thumbnail of ``source`` (whose content hash is ``sha256``)."""
    cached = cache_dir(CACHE_FOLDER) / f"{sha256}-{size}.jpg"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    data = make_thumbnail(source, size=size)
    try:
        atomic_write_bytes(cached, data)
    except Exception:  # a full or read-only cache costs only time
        pass
    return data


def make_thumbnail(source: Path, *, size: int = THUMB_SIZE) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side, upright as the camera held it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    _register_heif()
    try:
        handle = open_regular(source)
    except FileNotFoundError:
        raise WebError(f"{source.name} is no longer there (deleted or moved)", status=404) from None
    try:
        with handle, Image.open(handle) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(f"{width}×{height} pixels is too large", path=source)
            image.draft("RGB", (size * 2, size * 2))
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((size, size))
            out = io.BytesIO()
            upright.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
            return out.getvalue()
    except ImageDecodeError as exc:
        raise WebError(f"no thumbnail for {source.name}: {exc}", status=422) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise WebError(
            f"no thumbnail for {source.name}: not a readable image ({exc})", status=422
        ) from exc
    except Image.DecompressionBombError as exc:
        raise WebError(f"no thumbnail for {source.name}: {exc}", status=422) from exc
