"""Durable, atomic file writes: the one way mlupdated puts a file in place.

A reader of the destination sees the old file or the new one, never a partial one:
write a temporary file in the same directory, flush, fsync, ``os.replace`` onto the
destination, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import DiskFullError, StoreError

TEMP_PREFIX = ".mlupdated-tmp-"
FILE_MODE = 0o644

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory so that renames inside it are durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def translate_os_error(exc: OSError, path: str | os.PathLike[str]) -> StoreError:
    """Turn an OSError from a write into our error type, naming the file."""
    if exc.errno in _FULL_ERRNOS:
        return DiskFullError(f"disk full while writing ({exc.strerror})", path=path)
    return StoreError(f"cannot write: {exc.strerror or exc}", path=path)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    *,
    mode: int = FILE_MODE,
) -> Path:
    """Write a file atomically through ``write(fileobj)``; return the final path.

    On any failure the temporary file is removed and the destination is untouched.
    OSErrors come out as ``StoreError`` (``DiskFullError`` for ENOSPC/EFBIG).
    """
    dest = Path(path)
    directory = dest.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    except OSError as exc:
        raise translate_os_error(exc, dest) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, dest)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise translate_os_error(exc, dest) from exc
        raise
    fsync_dir(directory)
    return dest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data), mode=mode)


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files an interrupted :func:`atomic_write` left in ``directory``."""
    removed: list[Path] = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed
