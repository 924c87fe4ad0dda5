"""The workspace lock: one daemon per workspace.

An ``fcntl.flock`` on ``state/mlupdated.lock``, holding the owner's pid as text. The
kernel drops the lock when the process dies (even by kill -9), so a stale lock file
never blocks a restart; the pid inside is only for messages and for ``control``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import AlreadyRunningError, StoreError

LOCK_MODE = 0o644


class WorkspaceLock:
    """An exclusive, non-blocking lock on a file; ``acquire`` or fail at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid; ``AlreadyRunningError`` if another holds it."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file: {exc.strerror}", path=self.path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = read_pid(self.path)
                owner = f" (pid {pid})" if pid else ""
                raise AlreadyRunningError(
                    f"already running{owner}: another daemon holds this workspace",
                    path=self.path,
                ) from exc
            raise StoreError(f"cannot lock: {exc.strerror}", path=self.path) from exc
        # Only the holder writes the pid, so a reader never sees a stranger's number
        # half-written over ours.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race a starting daemon)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def read_pid(path: Path) -> int | None:
    """The pid written in a lock file, or None when absent or unreadable."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def lock_holder(path: Path) -> int | None:
    """The pid of the live process holding the lock, or None when nobody holds it.

    Probes with a shared non-blocking lock: it fails only while some process holds
    the exclusive one, which is the truth (a pid alone may have been reused).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_pid(path) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
