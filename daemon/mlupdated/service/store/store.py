"""The model store: numbered versions, their manifest, and the atomic swap of the live model.

Layout (inside the workspace)::

    models/current.mlmodel        the live model; only ever replaced by os.replace
    models/versions/NNNN.mlmodel  every model that was made, numbered from 1
    models/manifest.json          {"format": 1, "current": N, "versions": [entry, ...]}

Write order is what makes a kill -9 harmless: a version file is written (atomically)
before its manifest entry; ``current.mlmodel`` is replaced before the manifest says
so. ``recover()`` at start-up repairs what a kill between two steps left:

- stale temporary files are removed;
- a version file without a manifest entry is an update that never reached its
  manifest write (or a retention that never reached its deletes), so it was never
  promoted: it is **deleted** (the interrupted run is redone) — unless it is
  byte-identical to ``current.mlmodel`` (then it gets an entry, reason
  ``"recovered"``), or the manifest itself is gone or unreadable (then every version
  file is kept, and the manifest rebuilt from them and the database's run records:
  ``rebuild.py``; an unreadable one is kept as ``manifest.json.broken``);
- a manifest entry whose file is gone is dropped;
- ``current.mlmodel`` must exist and parse. If its bytes are those of a stored
  version, the manifest's ``current`` follows it (a kill between the swap and the
  manifest write). If it parses but is no stored version (put there by hand), it is
  stored as a new version (``"placed by hand"``) when it fits the workspace
  (``contract.py``), else kept as ``current.mlmodel.refused``. If it is missing
  or broken, it is restored from the manifest's current version (or the newest
  promoted one that still has its file).

Retention removes manifest entries first and files second, so a kill in between only
leaves orphans that ``recover()`` deletes. Every operation holds an ``flock`` on
``state/store.lock``, so ``mlupdated rollback`` and the daemon never interleave.

While the daemon runs, ``guard.py`` makes the same repairs every few seconds and
under the lock of every promotion and rollback (a promotion never overwrites a model
placed by hand: it is refused).

The code is cut in parts: ``manifest.py`` (the typed ``Manifest`` and its
``VersionEntry``), ``files.py`` (version names, the lock, file I/O), ``recovery.py``
(the function ``recover``), ``rebuild.py`` (a lost manifest), ``contract.py`` (what a
hand-placed model must keep), ``guard.py`` (the live check) and this module
(``ModelStore``: read, create, add, promote, rollback, retention), which owns a
``StoreFiles`` and a ``StoreGuard``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ModelParseError, PlacedByHandError, StoreError, WorkspaceError
from ...fsutil import atomic_write_bytes
from ...logs import get_logger
from .contract import placed_by_hand
from .files import REPAIR_HINT, StoreFiles, model_parses, sha256_bytes
from .guard import Checked, StoreGuard
from .manifest import Manifest, VersionEntry, now_iso
from .recovery import recover

if TYPE_CHECKING:
    from ..workspace import Workspace


class ModelStore:
    """Versions, manifest and the live model of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.files = StoreFiles(workspace)
        self._log = get_logger("store")
        self.guard = StoreGuard(self.files, self._log)

    # --- reading ----------------------------------------------------------------------

    def version_path(self, version: int) -> Path:
        """Where version ``version`` lives."""
        return self.files.version_path(version)

    def manifest(self) -> list[VersionEntry]:
        """All manifest entries, oldest version first."""
        return list(self.files.read_manifest().versions)

    def versions(self) -> list[int]:
        """Version numbers that have an entry (and so a file), ascending."""
        return self.files.read_manifest().numbers()

    def current_version(self) -> int:
        """The version ``current.mlmodel`` holds."""
        current = self.files.read_manifest().current
        if not isinstance(current, int):
            missing = (
                "missing" if not self.workspace.manifest.exists() else "names no current version"
            )
            raise WorkspaceError(f"manifest {missing}; {REPAIR_HINT}", path=self.workspace.manifest)
        return current

    def entry(self, version: int) -> VersionEntry:
        """The manifest entry of ``version``."""
        found = self.files.read_manifest().entry(version)
        if found is None:
            raise StoreError(f"no model version {version}", path=self.workspace.manifest)
        return found

    def read_version(self, version: int) -> bytes:
        """The bytes of ``version``."""
        return self.files.read_version(version)

    def locked(self) -> AbstractContextManager[None]:
        """Hold the store's lock across several operations (re-entrant in a thread)."""
        return self.files.locked()

    def recover(self) -> dict[str, Any]:
        """Repair what a kill left behind (see the module docstring); returns what it did."""
        return recover(self.files, log=self._log)

    def check(self) -> Checked:
        """The daemon's periodic look at what people changed (see :mod:`.guard`)."""
        return self.guard.check()

    # --- writing ----------------------------------------------------------------------

    def create(self, model_bytes: bytes, *, source: str) -> list[Path]:
        """Start a store with ``model_bytes`` as version 1 and current; returns what it wrote.

        Used by ``init``: version file, then ``current.mlmodel``, then the manifest (whose
        presence marks the store complete), so an interrupted init is simply redone.
        """
        written: list[Path] = []
        with self.files.locked():
            first = self.version_path(1)
            if not first.exists():
                self.workspace.versions.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(first, model_bytes)
                written.append(first)
            current = self.workspace.current_model
            if not current.exists() or current.read_bytes() != model_bytes:
                self.files.write_current(model_bytes)
                written.append(current)
            when = now_iso()
            entry = VersionEntry(
                version=1,
                parent=None,
                time=when,
                reason="initial",
                corrections={"count": 0, "ids": []},
                loss=None,
                metrics={},
                gate=None,
                promoted=True,
                promoted_at=when,
                sha256=sha256_bytes(model_bytes),
                source=source,
            )
            history = [{"version": 1, "from": None, "time": when, "reason": "initial"}]
            self.files.write_manifest(Manifest(current=1, versions=[entry], history=history))
            written.append(self.workspace.manifest)
        return written

    def add_version(
        self,
        model_bytes: bytes,
        *,
        parent: int | None,
        reason: str,
        corrections: list[int],
        loss: float | None = None,
        metrics: dict[str, Any] | None = None,
        gate: dict[str, Any] | None = None,
    ) -> int:
        """Store a new version (file first, then its manifest entry); returns its number.

        The version is not made current: call :meth:`promote` for that.
        """
        if not model_parses(model_bytes):
            raise ModelParseError(
                "refusing to store a model that does not parse", path=self.workspace.versions
            )
        with self.files.locked():
            manifest = self.files.read_manifest()
            version = manifest.next_number(self.files.files_on_disk())
            self.workspace.versions.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.version_path(version), model_bytes)
            manifest.versions.append(
                VersionEntry(
                    version=version,
                    parent=parent,
                    time=now_iso(),
                    reason=reason,
                    corrections={"count": len(corrections), "ids": list(corrections)},
                    loss=loss,
                    metrics=metrics or {},
                    gate=gate,
                    promoted=False,
                    sha256=sha256_bytes(model_bytes),
                )
            )
            self.files.write_manifest(manifest)
        self._log.info("model version stored", version=version, parent=parent, reason=reason)
        return version

    def promote(self, version: int, *, reason: str | None = None) -> None:
        """Make ``version`` the live model (atomic replace of ``current.mlmodel``).

        A model placed by hand since the last check is stored first, and wins: the
        promotion is refused (a ``PlacedByHandError``) rather than overwrite it."""
        with self.files.locked():
            placed = self.guard.placed_over(version)
            if placed is not None:
                raise PlacedByHandError(
                    f"not promoting version {version}: {placed_by_hand(placed)}",
                    path=self.workspace.current_model,
                )
            self._promote_locked(version, reason=reason)

    def _promote_locked(self, version: int, *, reason: str | None) -> None:
        manifest = self.files.read_manifest()
        entry = manifest.entry(version)
        if entry is None:
            raise StoreError(f"no model version {version}", path=self.workspace.manifest)
        model_bytes = self.read_version(version)
        if entry.sha256 and sha256_bytes(model_bytes) != entry.sha256:
            raise StoreError(
                f"model version {version} does not match its manifest checksum",
                path=self.version_path(version),
            )
        previous = manifest.current
        self.files.write_current(model_bytes)
        self.guard.remember_current()
        entry.promoted = True
        entry.promoted_at = now_iso()
        manifest.current = version
        manifest.history.append(
            {
                "version": version,
                "from": previous,
                "time": entry.promoted_at,
                "reason": reason or "promote",
            }
        )
        self.files.write_manifest(manifest)
        self._log.info("model promoted", version=version, previous=previous)

    def rollback(self, to: int | None = None) -> int:
        """Make an earlier version current; default: the previous promoted version."""
        with self.files.locked():
            # A model placed by hand is stored first: it is what is rolled back from.
            self.guard.check_locked(settle=False)
            manifest = self.files.read_manifest()
            current = manifest.current
            if to is None:
                earlier = [
                    e.version
                    for e in manifest.versions
                    if e.promoted and isinstance(current, int) and e.version < current
                ]
                if not earlier:
                    raise StoreError(
                        f"no earlier promoted version to roll back to (current is {current})",
                        path=self.workspace.manifest,
                    )
                to = max(earlier)
            if manifest.entry(to) is None:
                available = ", ".join(str(e.version) for e in manifest.versions)
                raise StoreError(
                    f"no model version {to} (available: {available})",
                    path=self.workspace.manifest,
                )
            self._promote_locked(to, reason="rollback")
        return to

    def apply_retention(self, keep: int) -> list[int]:
        """Keep the newest ``keep`` versions (plus version 1 and the current one)."""
        with self.files.locked():
            manifest = self.files.read_manifest()
            numbers = manifest.numbers()
            keep_set = set(numbers[-keep:]) if keep > 0 else set()
            keep_set.update({1, manifest.current})
            drop = [v for v in numbers if v not in keep_set]
            if not drop:
                return []
            manifest.versions = [e for e in manifest.versions if e.version not in drop]
            self.files.write_manifest(manifest)
            for version in drop:
                try:
                    self.version_path(version).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self._log.warning("cannot remove old version", version=version, error=str(exc))
        self._log.info("old model versions removed", versions=drop)
        return drop
