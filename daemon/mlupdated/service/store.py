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
  ``"recovered"``), or the manifest itself is gone (then every version file is kept
  and listed as ``"recovered"``: history is not thrown away with a lost index);
- a manifest entry whose file is gone is dropped;
- ``current.mlmodel`` must exist and parse. If its bytes are those of a stored
  version, the manifest's ``current`` follows it (a kill between the swap and the
  manifest write). If it parses but is no stored version (put there by hand), it is
  kept and stored as a new version (``"adopted current.mlmodel"``). If it is missing
  or broken, it is restored from the manifest's current version (or the newest
  promoted one that still has its file).

Retention removes manifest entries first and files second, so a kill in between only
leaves orphans that ``recover()`` deletes. Every operation holds an ``flock`` on
``state/store.lock``, so ``mlupdated rollback`` and the daemon never interleave.
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

from ..errors import ModelParseError, StoreError, WorkspaceError
from ..fsutil import atomic_write_bytes, remove_stale_temps
from ..logs import get_logger

if TYPE_CHECKING:
    import argparse

    from .workspace import Workspace

MANIFEST_FORMAT = 1
VERSION_DIGITS = 4
_VERSION_FILE = re.compile(r"^(\d+)\.mlmodel$")


def version_filename(version: int) -> str:
    """``7`` → ``0007.mlmodel``."""
    return f"{version:0{VERSION_DIGITS}d}.mlmodel"


def _now_iso() -> str:
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


class ModelStore:
    """Versions, manifest and the live model of one workspace."""

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

    # --- writing ----------------------------------------------------------------------

    def create(self, model_bytes: bytes, *, source: str) -> list[Path]:
        """Start a store with ``model_bytes`` as version 1 and current; returns what it wrote.

        Used by ``init``: version file, then ``current.mlmodel``, then the manifest (whose
        presence marks the store complete), so an interrupted init is simply redone.
        """
        written: list[Path] = []
        with self._locked():
            first = self.version_path(1)
            if not first.exists():
                self.workspace.versions.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(first, model_bytes)
                written.append(first)
            current = self.workspace.current_model
            if not current.exists() or current.read_bytes() != model_bytes:
                self._write_current(model_bytes)
                written.append(current)
            when = _now_iso()
            entry = {
                "version": 1,
                "parent": None,
                "time": when,
                "reason": "initial",
                "corrections": {"count": 0, "ids": []},
                "loss": None,
                "metrics": {},
                "gate": None,
                "promoted": True,
                "promoted_at": when,
                "sha256": sha256_bytes(model_bytes),
                "source": source,
            }
            history = [{"version": 1, "from": None, "time": when, "reason": "initial"}]
            self._write_manifest({"current": 1, "versions": [entry], "history": history})
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
        with self._locked():
            data = self._read_manifest()
            version = self._next_number(data, self._files_on_disk())
            self.workspace.versions.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.version_path(version), model_bytes)
            data["versions"].append(
                {
                    "version": version,
                    "parent": parent,
                    "time": _now_iso(),
                    "reason": reason,
                    "corrections": {"count": len(corrections), "ids": list(corrections)},
                    "loss": loss,
                    "metrics": metrics or {},
                    "gate": gate,
                    "promoted": False,
                    "sha256": sha256_bytes(model_bytes),
                }
            )
            self._write_manifest(data)
        self._log.info("model version stored", version=version, parent=parent, reason=reason)
        return version

    def promote(self, version: int, *, reason: str | None = None) -> None:
        """Make ``version`` the live model (atomic replace of ``current.mlmodel``)."""
        with self._locked():
            self._promote_locked(version, reason=reason)

    def _promote_locked(self, version: int, *, reason: str | None) -> None:
        data = self._read_manifest()
        entry = self._entry(data, version)
        if entry is None:
            raise StoreError(f"no model version {version}", path=self.workspace.manifest)
        model_bytes = self.read_version(version)
        if entry.get("sha256") and sha256_bytes(model_bytes) != entry["sha256"]:
            raise StoreError(
                f"model version {version} does not match its manifest checksum",
                path=self.version_path(version),
            )
        previous = data.get("current")
        self._write_current(model_bytes)
        entry["promoted"] = True
        entry["promoted_at"] = _now_iso()
        data["current"] = version
        data.setdefault("history", []).append(
            {
                "version": version,
                "from": previous,
                "time": entry["promoted_at"],
                "reason": reason or "promote",
            }
        )
        self._write_manifest(data)
        self._log.info("model promoted", version=version, previous=previous)

    def rollback(self, to: int | None = None) -> int:
        """Make an earlier version current; default: the previous promoted version."""
        with self._locked():
            data = self._read_manifest()
            current = data.get("current")
            if to is None:
                earlier = [
                    e["version"]
                    for e in data["versions"]
                    if e.get("promoted") and isinstance(current, int) and e["version"] < current
                ]
                if not earlier:
                    raise StoreError(
                        f"no earlier promoted version to roll back to (current is {current})",
                        path=self.workspace.manifest,
                    )
                to = max(earlier)
            if self._entry(data, to) is None:
                available = ", ".join(str(e["version"]) for e in data["versions"])
                raise StoreError(
                    f"no model version {to} (available: {available})",
                    path=self.workspace.manifest,
                )
            self._promote_locked(to, reason="rollback")
        return to

    def apply_retention(self, keep: int) -> list[int]:
        """Keep the newest ``keep`` versions (plus version 1 and the current one)."""
        with self._locked():
            data = self._read_manifest()
            numbers = sorted(e["version"] for e in data["versions"])
            keep_set = set(numbers[-keep:]) if keep > 0 else set()
            keep_set.update({1, data.get("current")})
            drop = [v for v in numbers if v not in keep_set]
            if not drop:
                return []
            data["versions"] = [e for e in data["versions"] if e["version"] not in drop]
            self._write_manifest(data)
            for version in drop:
                try:
                    self.version_path(version).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self._log.warning("cannot remove old version", version=version, error=str(exc))
        self._log.info("old model versions removed", versions=drop)
        return drop

    # --- start-up repair --------------------------------------------------------------

    def recover(self) -> dict[str, Any]:
        """Repair what a kill left behind (see the module docstring); returns what it did."""
        report: dict[str, Any] = {
            "temps": [],
            "deleted": [],
            "recovered": [],
            "dropped": [],
            "restored_current": None,
            "current_from_file": None,
            "adopted_current": None,
        }
        with self._locked():
            for directory in (self.workspace.models, self.workspace.versions):
                report["temps"] += [str(p) for p in remove_stale_temps(directory)]
            manifest_present = self.workspace.manifest.exists()
            data = self._read_manifest()
            on_disk = self._files_on_disk()
            current_path = self.workspace.current_model
            try:
                current_bytes: bytes | None = current_path.read_bytes()
            except OSError:
                current_bytes = None
            current_ok = current_bytes is not None and model_parses(current_bytes)
            current_sha = sha256_bytes(current_bytes) if current_ok and current_bytes else None

            listed = {e["version"] for e in data["versions"]}
            for version, path in sorted(on_disk.items()):
                if version in listed:
                    continue
                blob = path.read_bytes()
                blob_sha = sha256_bytes(blob)
                # With a manifest, an unlisted file is an interrupted add_version or
                # retention: never promoted, safe to delete. Without one (deleted by
                # hand), every version file is history worth keeping.
                if not manifest_present or blob_sha == current_sha:
                    if not model_parses(blob):
                        path.unlink()
                        report["deleted"].append(version)
                        continue
                    data["versions"].append(
                        self._recovered_entry(version, blob_sha, promoted=blob_sha == current_sha)
                    )
                    report["recovered"].append(version)
                else:
                    path.unlink()
                    report["deleted"].append(version)
            for entry in list(data["versions"]):
                if entry["version"] not in on_disk:
                    data["versions"].remove(entry)
                    report["dropped"].append(entry["version"])

            by_sha = {e.get("sha256"): e for e in data["versions"]}
            listed_current = self._entry(data, data.get("current"))  # type: ignore[arg-type]
            if (
                current_ok
                and listed_current is not None
                and listed_current.get("sha256") == current_sha
            ):
                pass  # the manifest and the file agree
            elif current_ok and current_sha in by_sha:
                entry = by_sha[current_sha]
                report["current_from_file"] = entry["version"]
                data["current"] = entry["version"]
                entry["promoted"] = True
            elif current_ok and current_bytes is not None:
                # A model put there by hand (or versions/ emptied): it is what readers load,
                # so keep it and give it a version of its own.
                version = self._next_number(data, on_disk)
                self.workspace.versions.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.version_path(version), current_bytes)
                data["versions"].append(
                    self._recovered_entry(version, current_sha or "", promoted=True)
                )
                data["versions"][-1]["reason"] = "adopted current.mlmodel"
                data["current"] = version
                report["adopted_current"] = version
            else:
                source = self._restore_source(data)
                if source is None:
                    raise WorkspaceError(
                        "current.mlmodel is missing or broken and no stored version can replace it",
                        path=current_path,
                    )
                self._write_current(self.read_version(source))
                data["current"] = source
                self._entry(data, source)["promoted"] = True  # type: ignore[index]
                report["restored_current"] = source
            self._write_manifest(data)
        changed = {k: v for k, v in report.items() if v}
        if changed:
            self._log.warning("model store repaired", **changed)
        return report

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
            "time": _now_iso(),
            "reason": "recovered",
            "corrections": {"count": 0, "ids": []},
            "loss": None,
            "metrics": {},
            "gate": None,
            "promoted": promoted,
            "sha256": sha,
        }

    def _restore_source(self, data: dict[str, Any]) -> int | None:
        candidates: list[int] = []
        current = data.get("current")
        if isinstance(current, int):
            candidates.append(current)
        candidates += sorted(
            (e["version"] for e in data["versions"] if e.get("promoted")), reverse=True
        )
        candidates += sorted((e["version"] for e in data["versions"]), reverse=True)
        for version in candidates:
            entry = self._entry(data, version)
            if entry is None:
                continue
            try:
                blob = self.read_version(version)
            except StoreError:
                continue
            if model_parses(blob) and (
                not entry.get("sha256") or sha256_bytes(blob) == entry["sha256"]
            ):
                return version
        return None


def run_rollback_command(args: argparse.Namespace) -> int:
    """``mlupdated rollback [--workspace DIR] [--to VERSION]``."""
    from .workspace import open_workspace, workspace_root_from_args

    workspace = open_workspace(workspace_root_from_args(args), create=False, model_path=None)
    store = ModelStore(workspace)
    before = store.current_version()
    after = store.rollback(getattr(args, "to", None))
    print(f"rolled back: version {after} is current (was {before})")
    return 0
