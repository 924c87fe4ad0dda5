"""The store's look at what people did to it while the daemon runs: :class:`StoreGuard`.

The daemon calls :meth:`StoreGuard.check` every few seconds, before each update, and
under the lock of every promotion and rollback:

- ``manifest.json`` deleted, emptied or unreadable: rebuilt from ``versions/`` and the
  database's run records (see :mod:`.rebuild`); an unreadable one that changed in the
  last seconds (an editor saving it) is left alone until it settles;
- ``current.mlmodel`` deleted, or no longer a model: restored from the manifest's
  current version (the newest promotion), and logged;
- ``current.mlmodel`` replaced by hand (its sha256 is not the current version's): when
  the model fits the workspace (the same class labels, the same inputs, updatable if
  the one it replaces was), it is stored as a new version with reason
  ``"placed by hand"`` and made current; otherwise it is refused in one log line, kept
  as ``models/current.mlmodel.refused`` and the current version is restored.

A stat key (inode, size, times) of ``current.mlmodel`` remembers the last file found
right, so an unchanged file is not hashed again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import StoreError
from ...fsutil import atomic_write_bytes
from .contract import PLACED_BY_HAND, REFUSED_SUFFIX, contract_problem
from .files import StoreFiles, model_parses, sha256_bytes
from .manifest import Manifest, VersionEntry, now_iso, recovered_entry
from .rebuild import SETTLE_SECONDS, settled
from .recovery import recover_locked, restore_source

if TYPE_CHECKING:
    from ...logs import Logger


@dataclass(frozen=True)
class Checked:
    """What one check found: whether the store is readable, and the version a model
    placed by hand became (None when there was none)."""

    readable: bool
    placed: int | None = None


class StoreGuard:
    """Finds and settles what people changed in the store (see the module doc)."""

    def __init__(self, files: StoreFiles, log: Logger) -> None:
        self.files = files
        self._log = log
        self._verified: tuple[int, ...] | None = None

    def check(self) -> Checked:
        """One look, under the store's lock."""
        with self.files.locked():
            return self.check_locked(settle=True)

    def remember_current(self) -> None:
        """``current.mlmodel`` was just written by the store: it is right as it is."""
        self._verified = _stat_key(self.files.workspace.current_model)

    def check_locked(self, *, settle: bool) -> Checked:
        """One look; the caller holds the lock. ``settle=False`` (a promotion is about
        to happen) acts on a file that changed a moment ago instead of waiting."""
        ws = self.files.workspace
        try:
            manifest = self.files.read_manifest()
            lost = not ws.manifest.exists()
        except StoreError:
            if settle and not settled(ws.manifest):
                return Checked(readable=False)
            lost = True
        if lost:
            recover_locked(self.files, log=self._log)
            self._verified = None
            manifest = self.files.read_manifest()
        return Checked(readable=True, placed=self._check_current(manifest, settle=settle))

    def placed_over(self, version: int) -> int | None:
        """The version placed by hand that promoting ``version`` would overwrite (None:
        none): one found now, or one adopted after ``version`` was made from another
        parent. The caller holds the lock."""
        placed = self.check_locked(settle=False).placed
        if placed is not None:
            return placed
        manifest = self.files.read_manifest()
        now, candidate = manifest.entry(manifest.current), manifest.entry(version)
        if now is None or candidate is None or now.reason != PLACED_BY_HAND:
            return None
        return manifest.current if candidate.parent != manifest.current else None

    # --- current.mlmodel ------------------------------------------------------------------

    def _check_current(self, manifest: Manifest, *, settle: bool) -> int | None:
        path = self.files.workspace.current_model
        key = _stat_key(path)
        if key is not None and key == self._verified:
            return None
        if key is None:
            self._restore(manifest, "current.mlmodel was deleted")
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._log.warning("current.mlmodel cannot be read", error=exc.strerror)
            return None
        sha = sha256_bytes(data)
        listed = manifest.entry(manifest.current)
        if listed is not None and listed.sha256 == sha:
            self._verified = key
            return None
        if settle and time.time() - key[2] / 1e9 < SETTLE_SECONDS:
            return None  # still being written, maybe: look again at the next check
        if not model_parses(data):
            self._restore(manifest, "current.mlmodel is no longer a Core ML model")
            return None
        same = [e for e in manifest.versions if e.sha256 == sha]
        if same:
            return self._make_current(manifest, same[0], key)
        problem = contract_problem(self.files, data, manifest)
        if problem is not None:
            refused = path.with_name(path.name + REFUSED_SUFFIX)
            atomic_write_bytes(refused, data)
            self._restore(
                manifest,
                f"current.mlmodel was replaced by a model that does not fit this "
                f"workspace ({problem}); it is kept as models/{refused.name}",
            )
            return None
        return self._adopt(manifest, data, sha)

    def _adopt(self, manifest: Manifest, data: bytes, sha: str) -> int:
        version = manifest.next_number(self.files.files_on_disk())
        self.files.workspace.versions.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.files.version_path(version), data)
        entry = recovered_entry(version, sha, promoted=True)
        entry.parent, entry.reason = manifest.current, PLACED_BY_HAND
        entry.promoted_at = entry.time
        manifest.versions.append(entry)
        self._record_promotion(manifest, version)
        self._log.warning(
            f"current.mlmodel was replaced by hand; stored as version {version} "
            f"({PLACED_BY_HAND}) and made current",
            version=version,
            previous=entry.parent,
        )
        self.remember_current()
        return version

    def _make_current(self, manifest: Manifest, entry: VersionEntry, key: tuple[int, ...]) -> int:
        version = entry.version
        previous = manifest.current
        entry.promoted = True
        self._record_promotion(manifest, version)
        self._log.warning(
            f"current.mlmodel was replaced by hand with the model of version {version}; "
            f"version {version} is current",
            version=version,
            previous=previous,
        )
        self._verified = key
        return version

    def _record_promotion(self, manifest: Manifest, version: int) -> None:
        manifest.history.append(
            {
                "version": version,
                "from": manifest.current,
                "time": now_iso(),
                "reason": PLACED_BY_HAND,
            }
        )
        manifest.current = version
        self.files.write_manifest(manifest)

    def _restore(self, manifest: Manifest, what: str) -> None:
        source = restore_source(self.files, manifest)
        if source is None:
            self._log.error(f"{what}; no stored version can replace it")
            return
        self.files.write_current(self.files.read_version(source))
        if manifest.current != source:
            manifest.current = source
            self.files.write_manifest(manifest)
        self.remember_current()
        self._log.warning(f"{what}; restored version {source}", version=source)


def _stat_key(path: os.PathLike[str]) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
