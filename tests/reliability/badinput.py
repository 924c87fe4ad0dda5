"""The table of bad (and merely unusual) inputs dropped into a running daemon.

Each kind is a name, where it goes (a label folder, or an unknown one), its file name,
a maker, and the expected outcome:

- ``queued``: an image the daemon must take as a correction (odd modes and formats are
  still photos: the model's input conversion handles them);
- ``refused``: one ``not queued: PATH: REASON`` log line, a row in the error table, no
  correction, and the daemon goes on;
- ``ignored``: a name the sync tools use for temporaries, never looked at.

``predict`` says what ``mlupdated predict --json`` must answer for the same file:
``"label"``, ``"error"`` (one JSON line with an ``error``; the other files still get
their answers), or ``None`` when the kind is not a file one would pass to it.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 16
# The decompression bomb: a PNG header claiming 100,000 × 100,000 pixels.
BOMB_SIDE = 100_000


@dataclass(frozen=True)
class Kind:
    name: str
    folder: str
    filename: str
    make: Callable[[Path, np.random.Generator], None]
    expect: str
    predict: str | None


def _rgb(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3)).astype(np.uint8))


def _png_bytes(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    _rgb(rng).save(out, format="PNG")
    return out.getvalue()


def _jpeg_bytes(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    _rgb(rng).resize((64, 64)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb() -> bytes:
    """A valid PNG signature and header claiming ``BOMB_SIDE``² RGB pixels, with a tiny
    compressed stream (a real bomb would inflate to 30 GB)."""
    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _write(data: bytes) -> Callable[[Path, np.random.Generator], None]:
    return lambda path, rng: path.write_bytes(data)


def _saved(mode: str, fmt: str, **options) -> Callable[[Path, np.random.Generator], None]:
    def make(path: Path, rng: np.random.Generator) -> None:
        _rgb(rng).convert(mode).save(path, format=fmt, **options)

    return make


def _frames(fmt: str) -> Callable[[Path, np.random.Generator], None]:
    def make(path: Path, rng: np.random.Generator) -> None:
        first, second = _rgb(rng), _rgb(rng)
        first.save(path, format=fmt, save_all=True, append_images=[second])

    return make


def _gray16(path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(rng.integers(0, 65535, (SIZE, SIZE)).astype(np.uint16)).save(path, "PNG")


def _float_tiff(path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(rng.random((SIZE, SIZE)).astype(np.float32)).save(path, "TIFF")


def _heic(path: Path, rng: np.random.Generator) -> None:
    import pillow_heif

    pillow_heif.from_pillow(_rgb(rng)).save(path)


def _truncated(path: Path, rng: np.random.Generator) -> None:
    data = _png_bytes(rng)
    path.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(path: Path, rng: np.random.Generator) -> None:
    data = _jpeg_bytes(rng)
    path.write_bytes(data[: len(data) // 3])


def _bad_crc(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(_png_bytes(rng))
    at = data.index(b"IDAT") + 8  # inside the compressed pixels
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _random(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(rng.integers(0, 256, 4096).astype(np.uint8).tobytes())


def _jpeg_as_heic(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(_jpeg_bytes(rng))


def _png(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(_png_bytes(rng))


def _fifo(path: Path, rng: np.random.Generator) -> None:
    os.mkfifo(path)


def _socket(path: Path, rng: np.random.Generator) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the socket file stays


def _directory(path: Path, rng: np.random.Generator) -> None:
    path.mkdir()


def outside_target(path: Path) -> Path:
    """The file outside the workspace that links point at (beside the workspace)."""
    return path.parents[3] / "outside" / f"{path.name}.target.png"


def _symlink_out(path: Path, rng: np.random.Generator) -> None:
    target = outside_target(path)
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(_png_bytes(rng))
    path.symlink_to(target)


def _hardlink_out(path: Path, rng: np.random.Generator) -> None:
    target = outside_target(path)
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(_png_bytes(rng))
    os.link(target, path)


LONG_NAME = "é" * 125 + "x.png"  # 255 bytes in UTF-8, the usual name limit

KINDS: tuple[Kind, ...] = (
    # Files that only look like images.
    Kind("zero-byte png", "Cat", "zero.png", _write(b""), "refused", "error"),
    Kind("zero-byte jpeg", "Cat", "zero.jpg", _write(b""), "refused", "error"),
    Kind("truncated png", "Cat", "truncated.png", _truncated, "refused", "error"),
    Kind("truncated jpeg", "Cat", "truncated.jpg", _truncated_jpeg, "refused", "error"),
    Kind("png with a corrupt pixel stream", "Cat", "badcrc.png", _bad_crc, "refused", "error"),
    Kind("random bytes named .png", "Cat", "noise.png", _random, "refused", "error"),
    Kind(
        "text named .jpg", "Cat", "notes.jpg", _write(b"just some text\n" * 20), "refused", "error"
    ),
    Kind(
        "html named .jpeg",
        "Cat",
        "page.jpeg",
        _write(b"<html><body>hi</body></html>"),
        "refused",
        "error",
    ),
    Kind(
        "pdf named .png",
        "Cat",
        "doc.png",
        _write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
        "refused",
        "error",
    ),
    Kind("png signature only", "Cat", "sig.png", _write(b"\x89PNG\r\n\x1a\n"), "refused", "error"),
    Kind(
        "decompression bomb (100k x 100k png)",
        "Cat",
        "bomb.png",
        _write(png_bomb()),
        "refused",
        "error",
    ),
    Kind(
        "heic without an image inside",
        "Cat",
        "empty.heic",
        _write(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
        "refused",
        "error",
    ),
    # Unusual but real images.
    Kind("animated gif", "Cat", "anim.gif", _frames("GIF"), "queued", "label"),
    Kind("multi-page tiff", "Cat", "pages.tiff", _frames("TIFF"), "queued", "label"),
    Kind("cmyk jpeg", "Cat", "cmyk.jpg", _saved("CMYK", "JPEG"), "queued", "label"),
    Kind("16-bit grayscale png", "Cat", "gray16.png", _gray16, "queued", "label"),
    Kind("32-bit float tiff", "Cat", "float.tiff", _float_tiff, "queued", "label"),
    Kind("palette png", "Cat", "palette.png", _saved("P", "PNG"), "queued", "label"),
    Kind("rgba png", "Cat", "alpha.png", _saved("RGBA", "PNG"), "queued", "label"),
    Kind("gray + alpha png", "Cat", "la.png", _saved("LA", "PNG"), "queued", "label"),
    Kind("1-bit png", "Cat", "bits.png", _saved("1", "PNG"), "queued", "label"),
    Kind("webp with alpha", "Cat", "alpha.webp", _saved("RGBA", "WEBP"), "queued", "label"),
    Kind("bmp", "Cat", "old.bmp", _saved("RGB", "BMP"), "queued", "label"),
    Kind("heic", "Cat", "phone.heic", _heic, "queued", "label"),
    Kind("jpeg named .HEIC", "Cat", "lie.HEIC", _jpeg_as_heic, "queued", "label"),
    Kind("png named .jpg", "Cat", "lie.jpg", _png, "queued", "label"),
    # Names.
    Kind("unicode name", "Cat", "chat-été-猫-🐈.png", _png, "queued", "label"),
    Kind("newline in the name", "Cat", "two\nlines.png", _png, "queued", "label"),
    Kind("255-byte name", "Cat", LONG_NAME, _png, "queued", "label"),
    Kind("leading dash and spaces", "Cat", "-rf  x .png", _png, "queued", "label"),
    Kind("unknown label folder", "Hamster", "pet.png", _png, "refused", None),
    # Things that are not regular files.
    Kind("symlink to a file outside", "Cat", "link-out.png", _symlink_out, "refused", None),
    Kind("hardlink to a file outside", "Cat", "hard-out.png", _hardlink_out, "queued", "label"),
    Kind("fifo named .png", "Cat", "pipe.png", _fifo, "refused", "error"),
    Kind("unix socket named .png", "Cat", "sock.png", _socket, "refused", None),
    Kind("directory named .png", "Cat", "folder.png", _directory, "ignored", None),
    # Sync-tool temporaries: never looked at.
    Kind("partial download", "Cat", "big.jpg.part", _png, "ignored", None),
    Kind("hidden rsync temporary", "Cat", ".big.jpg.Xy12Ab", _png, "ignored", None),
    Kind("browser download", "Cat", "big.jpg.crdownload", _png, "ignored", None),
)
