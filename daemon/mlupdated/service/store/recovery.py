"""The model store's start-up repair: :func:`recover`. The rules are in the docstring
of :mod:`mlupdated.service.store.store`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import StoreError, WorkspaceError
from ...fsutil import atomic_write_bytes, remove_stale_temps
from .files import Manifest, StoreFiles, model_parses, recovered_entry, sha256_bytes


@dataclass(frozen=True)
class _Current:
    """What ``current.mlmodel`` holds: its bytes when it parses, and their hash."""

    data: bytes | None
    sha: str | None

    @property
    def ok(self) -> bool:
        return self.data is not None


def recover(files: StoreFiles, *, log: Any) -> dict[str, Any]:
    """Repair what a kill left behind (see the store's docstring); returns what it did."""
    report: dict[str, Any] = {
        "temps": [],
        "deleted": [],
        "recovered": [],
        "dropped": [],
        "restored_current": None,
        "current_from_file": None,
        "adopted_current": None,
    }
    ws = files.workspace
    with files.locked():
        for directory in (ws.models, ws.versions):
            report["temps"] += [str(p) for p in remove_stale_temps(directory)]
        manifest_present = ws.manifest.exists()
        manifest = files.read_manifest()
        on_disk = files.files_on_disk()
        current = _read_current(ws.current_model)
        _reconcile_files(
            manifest, on_disk, current, manifest_present=manifest_present, report=report
        )
        _settle_current(files, manifest, on_disk, current, report=report)
        files.write_manifest(manifest)
    changed = {k: v for k, v in report.items() if v}
    if changed:
        log.warning("model store repaired", **changed)
    return report


def _read_current(path: Path) -> _Current:
    try:
        data: bytes | None = path.read_bytes()
    except OSError:
        data = None
    if data is None or not model_parses(data):
        return _Current(None, None)
    return _Current(data, sha256_bytes(data) if data else None)


def _reconcile_files(
    manifest: Manifest,
    on_disk: dict[int, Path],
    current: _Current,
    *,
    manifest_present: bool,
    report: dict[str, Any],
) -> None:
    """Entries for the files worth keeping, deletions for the rest, and no entry
    without its file."""
    listed = {e["version"] for e in manifest.versions}
    for version, path in sorted(on_disk.items()):
        if version in listed:
            continue
        blob = path.read_bytes()
        blob_sha = sha256_bytes(blob)
        # With a manifest, an unlisted file is an interrupted add_version or
        # retention: never promoted, safe to delete. Without one (deleted by
        # hand), every version file is history worth keeping.
        if (not manifest_present or blob_sha == current.sha) and model_parses(blob):
            promoted = blob_sha == current.sha
            manifest.versions.append(recovered_entry(version, blob_sha, promoted=promoted))
            report["recovered"].append(version)
        else:
            path.unlink()
            report["deleted"].append(version)
    for entry in list(manifest.versions):
        if entry["version"] not in on_disk:
            manifest.versions.remove(entry)
            report["dropped"].append(entry["version"])


def _settle_current(
    files: StoreFiles,
    manifest: Manifest,
    on_disk: dict[int, Path],
    current: _Current,
    *,
    report: dict[str, Any],
) -> None:
    """Make the manifest's ``current`` and ``current.mlmodel`` agree."""
    by_sha = {e.get("sha256"): e for e in manifest.versions}
    listed_current = manifest.entry(manifest.current)
    if current.ok and listed_current is not None and listed_current.get("sha256") == current.sha:
        return  # the manifest and the file agree
    if current.ok and current.sha in by_sha:
        entry = by_sha[current.sha]
        report["current_from_file"] = entry["version"]
        manifest.current = entry["version"]
        entry["promoted"] = True
        return
    if current.ok and current.data is not None:
        # A model put there by hand (or versions/ emptied): it is what readers load,
        # so keep it and give it a version of its own.
        version = manifest.next_number(on_disk)
        files.workspace.versions.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(files.version_path(version), current.data)
        entry = recovered_entry(version, current.sha or "", promoted=True)
        entry["reason"] = "adopted current.mlmodel"
        manifest.versions.append(entry)
        manifest.current = version
        report["adopted_current"] = version
        return
    source = _restore_source(files, manifest)
    if source is None:
        raise WorkspaceError(
            "current.mlmodel is missing or broken and no stored version can replace it",
            path=files.workspace.current_model,
        )
    files.write_current(files.read_version(source))
    manifest.current = source
    manifest.entry(source)["promoted"] = True  # type: ignore[index]
    report["restored_current"] = source


def _restore_source(files: StoreFiles, manifest: Manifest) -> int | None:
    """The version that may replace a missing or broken ``current.mlmodel``."""
    candidates: list[int] = []
    if isinstance(manifest.current, int):
        candidates.append(manifest.current)
    candidates += sorted(
        (e["version"] for e in manifest.versions if e.get("promoted")), reverse=True
    )
    candidates += sorted((e["version"] for e in manifest.versions), reverse=True)
    for version in candidates:
        entry = manifest.entry(version)
        if entry is None:
            continue
        try:
            blob = files.read_version(version)
        except StoreError:
            continue
        if model_parses(blob) and (
            not entry.get("sha256") or sha256_bytes(blob) == entry["sha256"]
        ):
            return version
    return None
