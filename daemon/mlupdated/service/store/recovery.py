"""The model store's start-up repair: :func:`recover`. The rules are in the docstring
of :mod:`mlupdated.service.store.store`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import StoreError, WorkspaceError
from ...fsutil import atomic_write_bytes, remove_stale_temps
from .contract import PLACED_BY_HAND, REFUSED_SUFFIX, contract_problem
from .files import StoreFiles, model_parses, sha256_bytes
from .manifest import Manifest, recovered_entry
from .rebuild import enrich, run_records, set_aside

if TYPE_CHECKING:
    from ...logs import Logger


@dataclass(frozen=True)
class _Current:
    """What ``current.mlmodel`` holds: its bytes when it parses, and their hash."""

    data: bytes | None
    sha: str | None

    @property
    def ok(self) -> bool:
        return self.data is not None


def recover(files: StoreFiles, *, log: Logger) -> dict[str, Any]:
    """Repair what a kill left behind (see the store's docstring); returns what it did."""
    with files.locked():
        return recover_locked(files, log=log)


def recover_locked(files: StoreFiles, *, log: Logger) -> dict[str, Any]:
    """:func:`recover` for a caller that holds the store's lock."""
    report: dict[str, Any] = {
        "temps": [],
        "manifest_rebuilt": None,
        "manifest_kept": None,
        "deleted": [],
        "recovered": [],
        "dropped": [],
        "unlisted": [],
        "restored_current": None,
        "current_from_file": None,
        "adopted_current": None,
        "refused_current": None,
    }
    ws = files.workspace
    for directory in (ws.models, ws.versions):
        report["temps"] += [str(p) for p in remove_stale_temps(directory)]
    manifest_present = ws.manifest.exists()
    try:
        manifest = files.read_manifest()
    except StoreError as exc:
        # Unreadable: kept aside, and rebuilt as if it were gone (never a reason to
        # throw away versions or to start over).
        kept = set_aside(ws.manifest)
        what = exc.reason.split(";")[0].removeprefix("manifest ")
        report["manifest_rebuilt"] = what
        report["manifest_kept"] = f"models/{kept.name}"
        manifest_present = False
        manifest = Manifest()
    else:
        if not manifest_present and ws.versions.is_dir():
            report["manifest_rebuilt"] = "missing"
    on_disk = files.files_on_disk()
    current = _read_current(ws.current_model)
    _reconcile_files(manifest, on_disk, current, manifest_present=manifest_present, report=report)
    if not manifest_present:
        enrich(manifest, run_records(ws.db_path))
    _settle_current(files, manifest, on_disk, current, report=report)
    files.write_manifest(manifest)
    changed = {k: v for k, v in report.items() if v}
    kept_note = report["manifest_kept"]
    if report["refused_current"]:
        log.warning(
            "current.mlmodel was replaced by a model that does not fit this workspace "
            f"({report['refused_current']}); restored version {report['restored_current']}",
            **changed,
        )
    elif report["manifest_rebuilt"] and on_disk:
        log.warning(
            f"models/manifest.json {report['manifest_rebuilt']}: rebuilt from models/versions/ "
            f"(versions {', '.join(map(str, manifest.numbers()))}; current {manifest.current})"
            + (f"; the broken file is kept as {report['manifest_kept']}" if kept_note else ""),
            **changed,
        )
    elif changed:
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
    listed = {e.version for e in manifest.versions}
    for version, path in sorted(on_disk.items()):
        if version in listed:
            continue
        blob = path.read_bytes()
        blob_sha = sha256_bytes(blob)
        # With a manifest, an unlisted file is an interrupted add_version or
        # retention: never promoted, safe to delete. Without one (deleted by
        # hand), every version file is history worth keeping.
        parses = model_parses(blob)
        if (not manifest_present or blob_sha == current.sha) and parses:
            promoted = blob_sha == current.sha
            manifest.versions.append(recovered_entry(version, blob_sha, promoted=promoted))
            report["recovered"].append(version)
        elif not manifest_present:
            report["unlisted"].append(version)  # damaged, but not ours to delete
        else:
            path.unlink()
            report["deleted"].append(version)
    for entry in list(manifest.versions):
        if entry.version not in on_disk:
            manifest.versions.remove(entry)
            report["dropped"].append(entry.version)


def _settle_current(
    files: StoreFiles,
    manifest: Manifest,
    on_disk: dict[int, Path],
    current: _Current,
    *,
    report: dict[str, Any],
) -> None:
    """Make the manifest's ``current`` and ``current.mlmodel`` agree."""
    by_sha = {e.sha256: e for e in manifest.versions}
    listed_current = manifest.entry(manifest.current)
    if current.ok and listed_current is not None and listed_current.sha256 == current.sha:
        return  # the manifest and the file agree
    if current.ok and current.sha in by_sha:
        entry = by_sha[current.sha]
        report["current_from_file"] = entry.version
        manifest.current = entry.version
        entry.promoted = True
        return
    problem = None
    if current.ok and current.data is not None:
        problem = contract_problem(files, current.data, manifest)
    if problem is not None and current.data is not None:
        # Placed by hand, and it does not fit: kept aside, and the current one restored.
        refused = files.workspace.current_model
        refused = refused.with_name(refused.name + REFUSED_SUFFIX)
        atomic_write_bytes(refused, current.data)
        report["refused_current"] = f"{problem}; kept as models/{refused.name}"
    elif current.ok and current.data is not None:
        # A model put there by hand (or versions/ emptied): it is what readers load,
        # so keep it and give it a version of its own.
        version = manifest.next_number(on_disk)
        files.workspace.versions.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(files.version_path(version), current.data)
        entry = recovered_entry(version, current.sha or "", promoted=True)
        entry.reason = PLACED_BY_HAND
        manifest.versions.append(entry)
        manifest.current = version
        report["adopted_current"] = version
        return
    source = restore_source(files, manifest)
    if source is None:
        raise WorkspaceError(
            "current.mlmodel is missing or broken and no stored version can replace it",
            path=files.workspace.current_model,
        )
    files.write_current(files.read_version(source))
    manifest.current = source
    manifest.entry(source).promoted = True  # type: ignore[union-attr]
    report["restored_current"] = source


def restore_source(files: StoreFiles, manifest: Manifest) -> int | None:
    """The version that may replace a missing or broken ``current.mlmodel``."""
    candidates: list[int] = []
    if isinstance(manifest.current, int):
        candidates.append(manifest.current)
    candidates += sorted(
        (e.version for e in manifest.versions if e.promoted), reverse=True
    )
    candidates += sorted((e.version for e in manifest.versions), reverse=True)
    for version in candidates:
        entry = manifest.entry(version)
        if entry is None:
            continue
        try:
            blob = files.read_version(version)
        except StoreError:
            continue
        if model_parses(blob) and (
            not entry.sha256 or sha256_bytes(blob) == entry.sha256
        ):
            return version
    return None
