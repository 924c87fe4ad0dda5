"""The model store's start-up repair (``ModelStore.recover``); the rules are in the
docstring of :mod:`mlupdated.service.store`."""

from __future__ import annotations

from typing import Any

from ..errors import StoreError, WorkspaceError
from ..fsutil import atomic_write_bytes, remove_stale_temps
from .store_files import StoreFiles, model_parses, sha256_bytes


class StoreRecovery(StoreFiles):
    """Repairs what a kill between two store steps left behind."""

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
