"""Which files intake looks at, and how it reads them: ignore rules, decoding, hashing.

Kept apart from the watching machinery in ``intake.py`` so that the rules (which are
what users and sync tools actually meet) read in one place.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import ImageDecodeError, ImageError, ImageTooLargeError

HASH_CHUNK = 1 << 20
# The size a decodability check asks for when the model's input size is not known.
CHECK_SIZE = (1024, 1024)

# Names sync tools, browsers and NAS boxes use for files that are not (yet) photos.
# Hidden names (".*") are handled separately: they cover Syncthing's ".syncthing.*.tmp",
# LibreOffice/Office "~" locks written as ".~*", macOS "._*" and ".DS_Store", rsync's
# ".name.XXXXXX" temporaries and the ".stfolder"/".stversions" folders.
DEFAULT_IGNORES = (
    "~syncthing~*",
    "*.tmp",
    "*.part",
    "*.partial",
    "*.filepart",
    "*.crdownload",
    "*.download",
    "*.icloud",
    # Nextcloud/ownCloud "virtual files": placeholders until the photo is downloaded.
    "*.nextcloud",
    "*.owncloud",
    "*.octransferid*.part",
    "thumbs.db",
    "desktop.ini",
    "@eadir",
    "#recycle",
    "#snapshot",
    "$recycle.bin",
    "lost+found",
)


def ignored_name(name: str, extra: Iterable[str] = ()) -> bool:
    """True for a file or folder name intake must never look at."""
    if not name or name.startswith("."):
        return True
    lowered = name.lower()
    if any(fnmatch.fnmatchcase(lowered, pattern) for pattern in DEFAULT_IGNORES):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in extra)


def ignored_relpath(rel: str, extra: Iterable[str] = ()) -> bool:
    """True if any component below the top folder (``corrections``/``inbox``) is ignored,
    or the whole relative path matches one of the ``extra`` globs."""
    extra = tuple(extra)
    parts = rel.split("/")
    if any(ignored_name(part, extra) for part in parts[1:]):
        return True
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in extra)


def file_kind(mode: int) -> str:
    """``file``, ``symlink``, ``directory`` or a name for anything else (fifo, socket…)."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def file_sig(info: os.stat_result) -> tuple[int, int, int]:
    """What tells one state of a file from another: size, mtime and ctime (ns).

    ctime moves on ``chmod``/``chown`` as well as on writes, so a file refused as
    unreadable is looked at again once its permissions are fixed (its size and mtime
    did not change).
    """
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved) lies inside ``root`` (resolved)."""
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def sha256_file(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> tuple[str, int]:
    """Streamed sha256 of a regular file and its size, never opening a FIFO or device.

    ``O_NONBLOCK`` keeps ``open`` from waiting on a FIFO swapped in after our ``lstat``;
    the ``fstat`` afterwards refuses anything that is not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"not a regular file ({file_kind(info.st_mode)})", path=path)
        digest = hashlib.sha256()
        size = 0
        while True:
            chunk = os.read(fd, HASH_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size
    finally:
        os.close(fd)


def check_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int,
    target_size: tuple[int, int] | None = None,
) -> None:
    """Raise an ``ImageError`` unless ``path`` decodes fully as an image within the pixel limit.

    Uses the engine's image loader when it is present (the same decoder training
    uses), otherwise Pillow directly. ``target_size`` (width, height; the model's input,
    else ``CHECK_SIZE``) is what training will feed: a very large JPEG is then decoded
    at a reduced scale, as training and ``predict`` decode it, instead of at full size
    (300 MB for 100 megapixels) just to be checked.
    """
    try:
        from ...coreml.images import load_image
    except ImportError:
        _pillow_check(Path(path), max_pixels=max_pixels)
        return
    image = load_image(path, max_pixels=max_pixels, target_size=target_size or CHECK_SIZE)
    image.close()


_heif_registered = False


def _pillow_check(path: Path, *, max_pixels: int) -> None:
    global _heif_registered
    from PIL import Image, UnidentifiedImageError

    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except ImportError:
            pass
        _heif_registered = True
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{width}×{height} pixels is more than the limit of {max_pixels}", path=path
                )
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(str(exc), path=path) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unknown format)", path=path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image ({exc})", path=path) from None


_MOUNTINFO = "/proc/self/mountinfo"


def _mount_points() -> set[str]:
    # Read fresh every time: a cached answer would call an unmounted share "still there".
    points: set[str] = set()
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4:
                    # Spaces and the like are octal escapes (\040) in this file.
                    raw = fields[4].encode("latin-1", "backslashreplace")
                    points.add(raw.decode("unicode_escape"))
    except OSError:
        pass
    return points


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a mount point, bind mounts included (``os.path.ismount``
    misses a bind mount from the same file system; Linux's mountinfo lists it)."""
    if os.path.ismount(path):
        return True
    return os.path.realpath(path) in _mount_points()


@dataclass(frozen=True)
class LabelMatch:
    """The model label a ``corrections/<folder>`` name stands for (None: no label), and
    the refusal or note to log about it."""

    label: str | None
    reason: str | None = None
    note: str | None = None


def match_label(folder: str, labels: Sequence[str]) -> LabelMatch:
    """Which of the model's ``labels`` the label folder ``folder`` names.

    Exact first. A name that differs only in Unicode normalisation (macOS and some sync
    tools write "Café" decomposed, NFD) is the same label: it is matched in NFC and a
    note says so. Otherwise the reason lists the labels and suggests a case slip.
    """
    if folder in labels:
        return LabelMatch(folder)
    composed = unicodedata.normalize("NFC", folder)
    for known in labels:
        if unicodedata.normalize("NFC", known) == composed:
            form = "decomposed (NFD)" if folder != composed else "differently normalised"
            return LabelMatch(
                known,
                note=f"label folder '{folder}' is written in {form} Unicode; "
                f"matched to the model label '{known}'",
            )
    reason = f"unknown label '{folder}' (model labels: {', '.join(labels)})"
    # Labels are exact (they are what the model outputs); help with the usual slip.
    near = [known for known in labels if known.casefold() == folder.casefold()]
    if near:
        reason += f"; did you mean '{near[0]}'?"
    return LabelMatch(None, reason=reason)


def show_path(rel: str) -> str:
    """A path for a log line: control characters (newlines in names) escaped, so one
    problem stays one line."""
    if rel.isprintable():
        return rel
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in rel)
