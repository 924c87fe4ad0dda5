"""The typed manifest writes back the bytes it read: same keys, same order, unknown keys kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlupdated.service.store import Manifest, ModelStore, VersionEntry
from mlupdated.service.workspace import Workspace, init_workspace

from tests.helpers.updatable_specs import build_updatable_spec

CREATED = ["version", "parent", "time", "reason", "corrections", "loss", "metrics", "gate"]


def _bytes(seed: int) -> bytes:
    return build_updatable_spec(weight_seed=seed).SerializeToString()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    model = tmp_path / "model.mlmodel"
    model.write_bytes(_bytes(0))
    return init_workspace(tmp_path / "ws", model_path=model)


def _rewrite(ws: Workspace) -> bytes:
    store = ModelStore(ws)
    store.files.write_manifest(store.files.read_manifest())
    return ws.manifest.read_bytes()


def test_entries_keep_the_key_order_they_were_written_in(ws: Workspace) -> None:
    store = ModelStore(ws)
    v2 = store.add_version(_bytes(1), parent=1, reason="update", corrections=[3])
    v3 = store.add_version(_bytes(2), parent=1, reason="update", corrections=[4])
    store.promote(v2)
    entries = json.loads(ws.manifest.read_text())["versions"]
    assert list(entries[0]) == [*CREATED, "promoted", "promoted_at", "sha256", "source"]
    # A promotion adds promoted_at after what the entry already had, as a dict would.
    assert list(entries[1]) == [*CREATED, "promoted", "sha256", "promoted_at"]
    assert list(entries[2]) == [*CREATED, "promoted", "sha256"]
    assert store.entry(v3).promoted is False and store.entry(v2).promoted_at
    before = ws.manifest.read_bytes()
    assert _rewrite(ws) == before


def test_unknown_and_missing_keys_survive_a_rewrite(ws: Workspace) -> None:
    data = json.loads(ws.manifest.read_text())
    entry = data["versions"][0]
    del entry["gate"], entry["metrics"]
    data["versions"][0] = {"note": "kept by hand", **dict(reversed(list(entry.items())))}
    data["extra"] = [1, 2]
    text = json.dumps(data, indent=2) + "\n"
    ws.manifest.write_text(text)
    assert _rewrite(ws) == text.encode()
    read = ModelStore(ws).entry(1)
    assert read.other == {"note": "kept by hand"} and read.gate is None


def test_fields_set_later_go_last_in_the_order_they_were_set() -> None:
    entry = VersionEntry.from_dict({"version": 4, "reason": "recovered", "sha256": "ab"})
    entry.put("rebuilt", True)
    entry.promoted_at = "2026-01-01T00:00:00Z"
    entry.reason = "update"
    assert list(entry.to_dict()) == ["version", "reason", "sha256", "rebuilt", "promoted_at"]
    manifest = Manifest.from_json({"format": 1, "current": 4, "versions": [entry.to_dict()]})
    assert manifest.to_json()["versions"] == [entry.to_dict()]
    assert manifest.entry(4) == VersionEntry.from_dict(entry.to_dict())
