"""Real kernel faults for the fault suite: small tmpfs mounts that fill up or turn
read-only, and a database held locked by another process."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 4096


def can_mount_tmpfs() -> bool:
    """True when this process may mount a tmpfs (root, or a capable container)."""
    probe = Path(tempfile.mkdtemp(prefix="tmpfs-probe-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    except OSError:
        return False
    finally:
        probe.rmdir()


@contextmanager
def tmpfs_over(directory: Path, *, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` over ``directory``, keeping what it held; unmount at
    the end (lazily: a daemon may still hold files there)."""
    keep = Path(tempfile.mkdtemp(prefix="tmpfs-keep-"))
    if directory.exists():
        shutil.copytree(directory, keep, dirs_exist_ok=True, symlinks=True)
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        check=True,
    )
    try:
        shutil.copytree(keep, directory, dirs_exist_ok=True, symlinks=True)
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
        shutil.rmtree(keep, ignore_errors=True)


def remount(directory: Path, *, read_only: bool) -> None:
    mode = "ro" if read_only else "rw"
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; return the filler."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * _CHUNK)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        # Then byte by byte: nothing may be left for the daemon.
        while True:
            try:
                handle.write(b"\0")
            except OSError:
                break
    return filler


@contextmanager
def database_locked(db_path: Path) -> Iterator[None]:
    """Hold an exclusive transaction on the daemon's database (another process would do
    the same: SQLite's locks are file locks)."""
    ready = threading.Event()
    release = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            ready.set()
            release.wait()
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("could not lock the database")
    try:
        yield
    finally:
        release.set()
        thread.join(30)
