"""The workspace lock: one daemon per workspace.

Two ``fcntl.flock`` s: one on the workspace directory itself (flock takes a directory's
file descriptor on Linux and macOS), which no deletion inside the workspace can undo,
and one on ``state/mlupdated.lock``, holding the owner's pid as text for messages and
for ``control``. The kernel drops both when the process dies (even by kill -9), so a
stale lock file never blocks a restart.

A running daemon asks ``lost()`` now and then: when ``state/`` (the lock file, or a
file it guards such as the database) was removed or replaced, it is writing to files
nobody will read again, and it stops (see ``app/daemon.py``).
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

    def __init__(self, path: Path, *, root: Path | None = None) -> None:
        self.path = Path(path)
        self.root = None if root is None else Path(root)
        self._fd: int | None = None
        self._root_fd: int | None = None
        self._guarded: dict[Path, tuple[int, int]] = {}

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid; ``AlreadyRunningError`` if another holds it."""
        if self._fd is not None:
            return
        root_fd = None
        if self.root is not None:
            root_fd = self._lock(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = self._lock(self.path, os.O_RDWR | os.O_CREAT)
        except BaseException:
            if root_fd is not None:
                os.close(root_fd)
            raise
        # Only the holder writes the pid, so a reader never sees a stranger's number
        # half-written over ours.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd, self._root_fd = fd, root_fd
        self._guarded = {self.path: _identity(os.fstat(fd))}

    def _lock(self, path: Path, flags: int) -> int:
        """An open descriptor of ``path`` holding the exclusive lock."""
        what = "the workspace" if flags & os.O_DIRECTORY else "the lock file"
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, LOCK_MODE)
        except OSError as exc:
            raise StoreError(f"cannot open {what}: {exc.strerror}", path=path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = read_pid(self.path)
                owner = f" (pid {pid})" if pid else ""
                raise AlreadyRunningError(
                    f"already running{owner}: another daemon holds this workspace",
                    path=path,
                ) from exc
            raise StoreError(f"cannot lock: {exc.strerror}", path=path) from exc
        return fd

    def guard(self, path: Path) -> None:
        """Also watch ``path`` (the database): ``lost`` reports it removed or replaced."""
        try:
            self._guarded[Path(path)] = _identity(os.stat(path))
        except OSError as exc:
            raise StoreError(f"cannot stat: {exc.strerror}", path=path) from exc

    def lost(self) -> Path | None:
        """The first guarded file (the lock file, then those given to ``guard``) that is
        gone or is another file now; None while all are the ones this lock opened."""
        if self._fd is None:
            return None
        for path, identity in self._guarded.items():
            try:
                now = _identity(os.stat(path))
            except FileNotFoundError:
                return path
            except OSError:  # cannot tell (a transient error): not a reason to stop
                continue
            if now != identity:
                return path
        return None

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
        if self._root_fd is not None:
            fcntl.flock(self._root_fd, fcntl.LOCK_UN)
            os.close(self._root_fd)
            self._root_fd = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


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
