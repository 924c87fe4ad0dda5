"""The model store's files: version names, the lock, file I/O.

:class:`StoreFiles` reads and writes without deciding anything: the ``flock`` every
store operation holds, the :class:`~.manifest.Manifest` (read, written atomically), the
version files on disk and ``current.mlmodel`` (written through a user's symlink).
:class:`~mlupdated.service.store.ModelStore` and :func:`.recovery.recover` own one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import StoreError
from ...fsutil import atomic_write_bytes
from .manifest import Manifest

if TYPE_CHECKING:
    from ..workspace import Workspace

VERSION_DIGITS = 4
_VERSION_FILE = re.compile(r"^(\d+)\.mlmodel$")
# How to repair a lost or unreadable manifest (the same words everywhere it is missed).
REPAIR_HINT = (
    "rebuild it from models/versions/ with: mlupdated repair "
    "(a running daemon rebuilds it by itself)"
)


def version_filename(version: int) -> str:
    """``7`` → ``0007.mlmodel``."""
    return f"{version:0{VERSION_DIGITS}d}.mlmodel"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def model_parses(data: bytes) -> bool:
    """True when ``data`` is a complete Core ML model protobuf (not empty, not truncated)."""
    if not data:
        return False
    from ...coreml.proto import Model_pb2

    model = Model_pb2.Model()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError and friends: any failure means "no"
        return False
    return model.specificationVersion > 0 and model.WhichOneof("Type") is not None


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


class StoreFiles:
    """Manifest and version-file I/O of one workspace's store (no decisions)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._held = threading.local()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``state/store.lock`` (every store operation does). Re-entrant in one
        thread, so a caller may hold it across several operations (check the current
        version, promote, record what was trained) and a rollback cannot land between."""
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        with self._flock():
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0

    @contextmanager
    def _flock(self) -> Iterator[None]:
        lock_path = self.workspace.state / "store.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the store lock: {exc.strerror}", path=lock_path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def version_path(self, version: int) -> Path:
        """Where version ``version`` lives."""
        return self.workspace.versions / version_filename(version)

    def read_manifest(self) -> Manifest:
        """The manifest (an empty one when the file is absent)."""
        path = self.workspace.manifest
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Manifest()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = "empty" if _is_empty(path) else str(exc)
            raise StoreError(f"manifest unreadable ({reason}); {REPAIR_HINT}", path=path) from exc
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise StoreError(f"manifest has no 'versions' list; {REPAIR_HINT}", path=path)
        return Manifest.from_json(data)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the manifest atomically."""
        text = json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(self.workspace.manifest, text.encode("utf-8"))

    def files_on_disk(self) -> dict[int, Path]:
        """The version files in ``versions/``, by number."""
        found: dict[int, Path] = {}
        directory = self.workspace.versions
        if not directory.is_dir():
            return found
        for entry in directory.iterdir():
            match = _VERSION_FILE.match(entry.name)
            if match and entry.is_file():
                found[int(match.group(1))] = entry
        return found

    def write_current(self, model_bytes: bytes) -> None:
        """Replace ``current.mlmodel`` atomically."""
        target = self.workspace.current_model
        # A user may point current.mlmodel itself at another place: write through the
        # link so it stays a link (os.replace on the link path would replace the link).
        if target.is_symlink():
            target = Path(os.path.realpath(target))
        atomic_write_bytes(target, model_bytes)

    def read_version(self, version: int) -> bytes:
        """The bytes of ``version``."""
        path = self.version_path(version)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"cannot read model version {version}: {exc.strerror}", path=path
            ) from exc
