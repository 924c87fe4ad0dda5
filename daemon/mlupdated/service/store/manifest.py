"""``models/manifest.json`` as typed records: :class:`Manifest` and its :class:`VersionEntry`.

Both read from and write back to the JSON form exactly: the same keys in the same
order, keys we do not know kept as they were, so a manifest read and written again
is the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = 1


def now_iso() -> str:
    """The current UTC time as ISO 8601 seconds with a Z (manifest timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# Written only by the versions that have them (a promotion, ``init``).
_WHEN_SET = ("promoted_at", "source")


@dataclass
class VersionEntry:
    """One entry of the manifest's ``versions`` list: one version file and how it was
    made. Attribute names are the JSON keys (``time`` is when it was created).

    ``keys`` is the entry's key order: read from the file, or the order a new entry is
    written in. Assigning a known field the entry did not have adds its key at the end,
    as a dict would; ``other`` keeps the keys we do not know (``rebuilt``, ...)."""

    version: int
    parent: int | None = None
    time: str | None = None
    reason: str | None = None
    corrections: dict[str, Any] = field(default_factory=dict)
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    promoted: bool = False
    promoted_at: str | None = None
    sha256: str | None = None
    source: str | None = None
    other: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [
                name
                for name in _FIELDS
                if name not in _WHEN_SET or getattr(self, name) is not None
            ]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        keys = self.__dict__.get("keys")
        if keys is not None and name in _FIELDS and name not in keys:
            keys.append(name)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionEntry:
        """The entry of one parsed JSON object."""
        known = {k: v for k, v in data.items() if k in _FIELDS}
        other = {k: v for k, v in data.items() if k not in _FIELDS}
        entry = cls(**{"version": data.get("version"), **known}, other=other, keys=list(data))
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the keys it was read with, in their order, then any added."""
        out: dict[str, Any] = {}
        for key in [*self.keys, *(k for k in self.other if k not in self.keys)]:
            if key in _FIELDS:
                out[key] = getattr(self, key)
            elif key in self.other:
                out[key] = self.other[key]
        return out

    def put(self, key: str, value: Any) -> None:
        """Set a key this class does not know (kept in ``other``, added at the end)."""
        self.other[key] = value
        if key not in self.keys:
            self.keys.append(key)

    @property
    def correction_ids(self) -> list[Any]:
        """The ids in ``corrections`` (``[]`` when it has none)."""
        corrections = self.corrections
        ids = corrections.get("ids") if isinstance(corrections, dict) else corrections
        return list(ids or [])


_FIELDS = tuple(f.name for f in fields(VersionEntry) if f.name not in ("other", "keys"))


def recovered_entry(version: int, sha: str, *, promoted: bool) -> VersionEntry:
    """The entry of a version file found without one."""
    return VersionEntry(
        version=version,
        parent=None,
        time=now_iso(),
        reason="recovered",
        corrections={"count": 0, "ids": []},
        loss=None,
        metrics={},
        gate=None,
        promoted=promoted,
        sha256=sha,
    )


@dataclass
class Manifest:
    """``models/manifest.json``: the current version, one :class:`VersionEntry` per
    version file, and the promotion history (kept as its JSON objects); keys we do
    not know are kept as they were."""

    current: int | None = None
    versions: list[VersionEntry] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)
    # The file's key order, kept when it is written back.
    keys: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """The manifest of a parsed ``manifest.json`` (checked by the caller)."""
        other = {k: v for k, v in data.items() if k not in ("current", "versions", "history")}
        history = data.get("history")
        return cls(
            current=data.get("current"),
            versions=[VersionEntry.from_dict(e) for e in data["versions"]],
            history=list(history) if isinstance(history, list) else [],
            other=other,
            keys=list(data),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form, entries sorted by version."""
        values = dict(self.other)
        values["current"] = self.current
        values["versions"] = [e.to_dict() for e in sorted(self.versions, key=lambda e: e.version)]
        if self.history or "history" in self.keys:
            values["history"] = self.history
        values["format"] = MANIFEST_FORMAT
        order = [*self.keys, *(k for k in values if k not in self.keys)]
        return {k: values[k] for k in order if k in values}

    def entry(self, version: int | None) -> VersionEntry | None:
        """The entry of ``version``, or None."""
        for entry in self.versions:
            if entry.version == version:
                return entry
        return None

    def numbers(self) -> list[int]:
        """Version numbers that have an entry, ascending."""
        return sorted(e.version for e in self.versions)

    def next_number(self, on_disk: dict[int, Path]) -> int:
        """One past every number ever used (entries, files, promotions): never reused."""
        used = [e.version for e in self.versions]
        used += [h.get("version") or 0 for h in self.history]
        rebuilt = self.other.get("rebuilt")
        if isinstance(rebuilt, dict) and isinstance(rebuilt.get("highest_version"), int):
            used.append(rebuilt["highest_version"])
        return max([0, *used, *on_disk]) + 1
