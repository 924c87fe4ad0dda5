"""The model store's files: version names, the manifest's reading and writing, the lock.

:class:`StoreFiles` is the part of :class:`~mlupdated.service.store.ModelStore` that
reads and writes without deciding anything: the ``flock`` every store operation holds,
the manifest (read, write atomically), the version files on disk, ``current.mlmodel``
(written through a user's symlink) and the read-only API (``manifest``, ``versions``,
``current_version``, ``entry``, ``read_version``, ``version_path``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, WorkspaceError
from ..fsutil import atomic_write_bytes
from ..logs import get_logger

if TYPE_CHECKING:
    from .workspace import Workspace

MANIFEST_FORMAT = 1
VERSION_DIGITS = 4
_VERSION_FILE = re.compile(r"^(\d+)\.mlmodel$")


def version_filename(version: int) -> str:
    """``7`` → ``0007.mlmodel``."""
    return f"{version:0{VERSION_DIGITS}d}.mlmodel"


def now_iso() -> str:
    """The current UTC time as ISO 8601 seconds with a Z (manifest timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def model_parses(data: bytes) -> bool:
    """True when ``data`` is a complete Core ML model protobuf (not empty, not truncated)."""
    if not data:
        return False
    from ..coreml.proto import Model_pb2

    model = Model_pb2.Model()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError and friends: any failure means "no"
        return False
    return model.specificationVersion > 0 and model.WhichOneof("Type") is not None


class StoreFiles:
    """Manifest and version-file I/O of one workspace's store (no decisions)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._log = get_logger("store")

    # --- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
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

    def _read_manifest(self) -> dict[str, Any]:
        path = self.workspace.manifest
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": MANIFEST_FORMAT, "current": None, "versions": []}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"manifest unreadable: {exc}", path=path) from exc
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise StoreError("manifest has no 'versions' list", path=path)
        return data

    def _write_manifest(self, data: dict[str, Any]) -> None:
        data["format"] = MANIFEST_FORMAT
        data["versions"].sort(key=lambda e: e["version"])
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(self.workspace.manifest, text.encode("utf-8"))

    def _files_on_disk(self) -> dict[int, Path]:
        found: dict[int, Path] = {}
        directory = self.workspace.versions
        if not directory.is_dir():
            return found
        for entry in directory.iterdir():
            match = _VERSION_FILE.match(entry.name)
            if match and entry.is_file():
                found[int(match.group(1))] = entry
        return found

    @staticmethod
    def _entry(data: dict[str, Any], version: int) -> dict[str, Any] | None:
        for entry in data["versions"]:
            if entry.get("version") == version:
                return entry
        return None

    def _write_current(self, model_bytes: bytes) -> None:
        target = self.workspace.current_model
        # A user may point current.mlmodel itself at another place: write through the
        # link so it stays a link (os.replace on the link path would replace the link).
        if target.is_symlink():
            target = Path(os.path.realpath(target))
        atomic_write_bytes(target, model_bytes)

    # --- reading ----------------------------------------------------------------------

    def manifest(self) -> list[dict[str, Any]]:
        """All manifest entries, oldest version first."""
        return list(self._read_manifest()["versions"])

    def versions(self) -> list[int]:
        """Version numbers that have an entry (and so a file), ascending."""
        return sorted(e["version"] for e in self._read_manifest()["versions"])

    def current_version(self) -> int:
        """The version ``current.mlmodel`` holds."""
        current = self._read_manifest().get("current")
        if not isinstance(current, int):
            raise WorkspaceError("no current version in the manifest", path=self.workspace.manifest)
        return current

    def entry(self, version: int) -> dict[str, Any]:
        """The manifest entry of ``version``."""
        found = self._entry(self._read_manifest(), version)
        if found is None:
            raise StoreError(f"no model version {version}", path=self.workspace.manifest)
        return found

    def read_version(self, version: int) -> bytes:
        """The bytes of ``version``."""
        path = self.version_path(version)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"cannot read model version {version}: {exc.strerror}", path=path
            ) from exc

    @staticmethod
    def _next_number(data: dict[str, Any], on_disk: dict[int, Path]) -> int:
        """One past every number ever used (entries, files, promotions): never reused."""
        used = [e["version"] for e in data["versions"]]
        used += [h.get("version") or 0 for h in data.get("history", [])]
        return max([0, *used, *on_disk]) + 1

    @staticmethod
    def _recovered_entry(version: int, sha: str, *, promoted: bool) -> dict[str, Any]:
        return {
            "version": version,
            "parent": None,
            "time": now_iso(),
            "reason": "recovered",
            "corrections": {"count": 0, "ids": []},
            "loss": None,
            "metrics": {},
            "gate": None,
            "promoted": promoted,
            "sha256": sha,
        }
