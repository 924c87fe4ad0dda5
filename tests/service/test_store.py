"""The model store: versions, manifest, atomic promote, rollback, retention, recovery."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from mlupdated.commands.rollback import run as run_rollback_command
from mlupdated.errors import ModelParseError, StoreError
from mlupdated.fsutil import TEMP_PREFIX
from mlupdated.service.store import Manifest, ModelStore, VersionEntry, model_parses
from mlupdated.service.workspace import Workspace, init_workspace

from tests.helpers.updatable_specs import build_updatable_spec


def _bytes(seed: int) -> bytes:
    return build_updatable_spec(weight_seed=seed).SerializeToString()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    model = tmp_path / "model.mlmodel"
    model.write_bytes(_bytes(0))
    return init_workspace(tmp_path / "ws", model_path=model)


def _add(store: ModelStore, seed: int, parent: int = 1) -> int:
    return store.add_version(
        _bytes(seed),
        parent=parent,
        reason="update",
        corrections=[1, 2],
        loss=0.25,
        metrics={"accuracy": 1.0},
        gate={"passed": True},
    )


def _files(ws: Workspace) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in ws.versions.glob("*.mlmodel"))


def test_add_version_writes_file_then_manifest(ws: Workspace) -> None:
    store = ModelStore(ws)
    v = _add(store, 1)
    assert v == 2 and store.versions() == [1, 2] == _files(ws)
    assert store.read_version(2) == _bytes(1)
    entry = store.entry(2)
    assert entry.parent == 1 and entry.reason == "update" and entry.loss == 0.25
    assert entry.corrections == {"count": 2, "ids": [1, 2]}
    assert entry.promoted is False and entry.gate == {"passed": True}
    assert entry.time.endswith("Z")
    # Not current until promoted.
    assert store.current_version() == 1
    assert ws.current_model.read_bytes() == _bytes(0)


def test_refuses_to_store_garbage(ws: Workspace) -> None:
    with pytest.raises(ModelParseError):
        ModelStore(ws).add_version(b"\x00garbage", parent=1, reason="x", corrections=[])
    assert _files(ws) == [1]


def test_promote_and_rollback(ws: Workspace) -> None:
    store = ModelStore(ws)
    for seed in (1, 2):
        store.promote(_add(store, seed))
    assert store.current_version() == 3
    assert ws.current_model.read_bytes() == _bytes(2)
    assert store.rollback() == 2
    assert ws.current_model.read_bytes() == _bytes(1)
    assert store.rollback(to=1) == 1
    assert ws.current_model.read_bytes() == _bytes(0)
    with pytest.raises(StoreError, match="no earlier promoted version"):
        store.rollback()
    with pytest.raises(StoreError, match="no model version 9"):
        store.rollback(to=9)
    history = json.loads(ws.manifest.read_text())["history"]
    assert [h["version"] for h in history] == [1, 2, 3, 2, 1]


def test_rollback_skips_versions_never_promoted(ws: Workspace) -> None:
    store = ModelStore(ws)
    store.promote(_add(store, 1))  # 2
    _add(store, 2)  # 3, rejected by a gate: never promoted
    store.promote(_add(store, 3))  # 4
    assert store.rollback() == 2


def test_rollback_command(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    store = ModelStore(ws)
    store.promote(_add(store, 1))
    assert run_rollback_command(argparse.Namespace(workspace=str(ws.root), to=None)) == 0
    assert "version 1 is current (was 2)" in capsys.readouterr().out
    assert store.current_version() == 1


def test_promote_is_atomic_for_readers(ws: Workspace) -> None:
    store = ModelStore(ws)
    versions = [_add(store, seed) for seed in range(1, 5)]
    valid = {store.read_version(v) for v in [1, *versions]}
    stop = threading.Event()
    seen: list[bytes] = []
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = ws.current_model.read_bytes()
            seen.append(data)
            if data not in valid or not model_parses(data):
                bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(5):
            for v in versions:
                store.promote(v)
    finally:
        stop.set()
        thread.join()
    assert bad == [] and len(seen) > 0


def test_an_open_old_handle_keeps_working(ws: Workspace) -> None:
    store = ModelStore(ws)
    with open(ws.current_model, "rb") as old:
        store.promote(_add(store, 1))
        assert old.read() == _bytes(0)
    assert ws.current_model.read_bytes() == _bytes(1)


def test_symlinked_models_folder_stays_a_symlink(ws: Workspace, tmp_path: Path) -> None:
    shared = tmp_path / "shared-models"
    os.rename(ws.models, shared)
    os.symlink(shared, ws.models)
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    assert ws.models.is_symlink()
    assert (shared / "current.mlmodel").read_bytes() == _bytes(1)
    assert (shared / "versions" / "0002.mlmodel").is_file()
    store.rollback()
    assert ws.models.is_symlink() and (shared / "current.mlmodel").read_bytes() == _bytes(0)


def test_symlinked_current_model_stays_a_symlink(ws: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "app" / "Model.mlmodel"
    target.parent.mkdir()
    target.write_bytes(ws.current_model.read_bytes())
    ws.current_model.unlink()
    ws.current_model.symlink_to(target)
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    assert ws.current_model.is_symlink() and target.read_bytes() == _bytes(1)


def test_retention_keeps_first_and_current(ws: Workspace) -> None:
    store = ModelStore(ws)
    for seed in range(1, 8):
        v = _add(store, seed)
        if seed == 2:
            store.promote(v)  # version 3 current
    assert store.versions() == list(range(1, 9))
    dropped = store.apply_retention(3)
    assert dropped == [2, 4, 5]
    assert store.versions() == [1, 3, 6, 7, 8] == _files(ws)
    assert store.current_version() == 3
    assert store.apply_retention(3) == []
    # Numbers are never reused.
    assert _add(store, 9) == 9


def test_recover_cleans_temps(ws: Workspace) -> None:
    for directory in (ws.models, ws.versions):
        (directory / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    report = ModelStore(ws).recover()
    assert len(report["temps"]) == 2
    assert not list(ws.models.rglob(f"{TEMP_PREFIX}*"))


def test_recover_deletes_an_orphan_version(ws: Workspace) -> None:
    # A kill after the version file was written, before its manifest entry.
    (ws.versions / "0002.mlmodel").write_bytes(_bytes(1))
    report = ModelStore(ws).recover()
    assert report["deleted"] == [2]
    assert _files(ws) == [1] == ModelStore(ws).versions()


def test_recover_follows_a_current_model_newer_than_the_manifest(ws: Workspace) -> None:
    store = ModelStore(ws)
    v = _add(store, 1)
    # A kill after current.mlmodel was replaced, before the manifest said so.
    ws.current_model.write_bytes(store.read_version(v))
    report = store.recover()
    assert report["current_from_file"] == v
    assert store.current_version() == v and store.entry(v).promoted


def test_recover_keeps_an_orphan_that_is_current(ws: Workspace) -> None:
    (ws.versions / "0002.mlmodel").write_bytes(_bytes(1))
    ws.current_model.write_bytes(_bytes(1))
    store = ModelStore(ws)
    report = store.recover()
    assert report["recovered"] == [2]
    assert store.current_version() == 2 and store.entry(2).reason == "recovered"


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty"])
def test_recover_restores_a_broken_current_model(ws: Workspace, damage: str) -> None:
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    good = ws.current_model.read_bytes()
    if damage == "missing":
        ws.current_model.unlink()
    elif damage == "truncated":
        ws.current_model.write_bytes(good[: len(good) // 3])
    else:
        ws.current_model.write_bytes(b"")
    report = store.recover()
    assert report["restored_current"] == 2
    assert ws.current_model.read_bytes() == good


def test_recover_drops_entries_whose_file_is_gone(ws: Workspace) -> None:
    store = ModelStore(ws)
    _add(store, 1)
    store.version_path(2).unlink()
    assert store.recover()["dropped"] == [2]
    assert store.versions() == [1] == _files(ws)


def test_recover_on_a_healthy_store_changes_nothing(ws: Workspace) -> None:
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    before = ws.manifest.read_text()
    report = store.recover()
    assert not any(report.values())
    assert json.loads(ws.manifest.read_text()) == json.loads(before)


def test_unreadable_manifest_is_a_store_error(ws: Workspace) -> None:
    ws.manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreError, match="manifest unreadable"):
        ModelStore(ws).versions()


_SWAPPER = """
import sys
from pathlib import Path
from mlupdated.service.store import ModelStore
from mlupdated.service.workspace import Workspace
store = ModelStore(Workspace(Path(sys.argv[1])))
blobs = [Path(p).read_bytes() for p in sys.argv[2:]]
print("ready", flush=True)
i = 0
while True:
    v = store.add_version(blobs[i % len(blobs)], parent=store.current_version(), reason="loop",
                          corrections=[i])
    store.promote(v)
    if i % 3 == 0:
        store.apply_retention(4)
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45, 0.8])
def test_kill_during_swaps_leaves_a_consistent_store(
    ws: Workspace, tmp_path: Path, delay: float
) -> None:
    import signal
    import subprocess
    import sys
    import time

    blobs = []
    for seed in (1, 2, 3):
        path = tmp_path / f"m{seed}.mlmodel"
        path.write_bytes(_bytes(seed))
        blobs.append(str(path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(ws.root), *blobs], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ModelStore(ws)
    store.recover()
    current = ws.current_model.read_bytes()
    assert model_parses(current)
    assert current == store.read_version(store.current_version())
    assert store.versions() == _files(ws)
    assert not list(ws.models.rglob(f"{TEMP_PREFIX}*"))
    for entry in store.manifest():
        assert store.read_version(entry.version) in {_bytes(s) for s in (0, 1, 2, 3)}


def test_recover_rebuilds_a_lost_manifest_without_deleting_history(ws: Workspace) -> None:
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    _add(store, 2)
    ws.manifest.unlink()
    report = store.recover()
    assert report["deleted"] == [] and report["recovered"] == [1, 2, 3]
    assert store.versions() == [1, 2, 3] == _files(ws)
    assert store.current_version() == 2
    # Version 1 is the initial model, current once whatever the database says.
    assert [e.promoted for e in store.manifest()] == [True, True, False]
    assert store.entry(1).reason == "initial"


def test_recover_adopts_a_hand_placed_current_model(ws: Workspace) -> None:
    store = ModelStore(ws)
    ws.current_model.write_bytes(_bytes(5))
    report = store.recover()
    assert report["adopted_current"] == 2
    assert store.current_version() == 2
    assert store.read_version(2) == _bytes(5) == ws.current_model.read_bytes()
    assert store.entry(2).reason == "placed by hand"


def test_recover_after_versions_folder_emptied(ws: Workspace) -> None:
    store = ModelStore(ws)
    store.promote(_add(store, 1))
    for path in ws.versions.iterdir():
        path.unlink()
    report = store.recover()
    assert report["dropped"] == [1, 2]
    assert store.versions() == [3] == _files(ws)
    assert store.read_version(3) == _bytes(1) == ws.current_model.read_bytes()


def test_recover_refuses_a_hand_placed_model_with_other_labels(ws: Workspace) -> None:
    store = ModelStore(ws)
    first = ws.current_model.read_bytes()
    wrong = build_updatable_spec(weight_seed=5, classes=("Cat", "Dog", "Bird")).SerializeToString()
    ws.current_model.write_bytes(wrong)
    report = store.recover()
    assert "class labels Bird, Cat, Dog instead of Cat, Dog" in report["refused_current"]
    assert report["restored_current"] == 1 and report["adopted_current"] is None
    assert ws.current_model.read_bytes() == first
    assert (ws.models / "current.mlmodel.refused").read_bytes() == wrong
    assert store.versions() == [1]


def test_promotion_never_overwrites_a_model_placed_by_hand(ws: Workspace) -> None:
    store = ModelStore(ws)
    candidate = _add(store, 1)
    ws.current_model.write_bytes(_bytes(7))  # placed while the candidate was trained
    with pytest.raises(StoreError, match="a model placed by hand is current"):
        store.promote(candidate)
    assert ws.current_model.read_bytes() == _bytes(7)
    assert store.current_version() == 3
    assert store.entry(3).reason == "placed by hand"
    assert store.read_version(3) == _bytes(7)


def test_lost_manifest_is_rebuilt_with_what_the_runs_recorded(ws: Workspace) -> None:
    from mlupdated.service.queue import Queue

    store = ModelStore(ws)
    with Queue(ws.db_path) as queue:
        run = queue.start_run(correction_ids=[], policy="incremental")
        version = _add(store, 1)
        store.promote(version)
        queue.finish_run(
            run, outcome="promoted", version=version, loss=0.5, metrics={}, reason=None, duration=1
        )
        rejected = queue.start_run(correction_ids=[], policy="incremental")
        queue.finish_run(
            rejected, outcome="rejected", version=3, loss=0.9, metrics={}, reason="x", duration=1
        )
    # Version 3 was pruned; the runs remember it.
    ws.manifest.unlink()
    store.recover()
    assert store.current_version() == 2
    assert (store.entry(2).reason, store.entry(2).loss) == ("update", 0.5)
    assert store.add_version(_bytes(9), parent=2, reason="update", corrections=[]) == 4


def test_promotion_never_overwrites_a_model_adopted_since_the_candidate(ws: Workspace) -> None:
    store = ModelStore(ws)
    candidate = _add(store, 1)
    ws.current_model.write_bytes(_bytes(7))
    assert store.check().placed is None  # just written: maybe not whole yet
    settled = ws.current_model.stat().st_mtime - 10
    os.utime(ws.current_model, (settled, settled))
    assert store.check().placed == 3  # the daemon's periodic check saw it first
    with pytest.raises(StoreError, match="a model placed by hand is current"):
        store.promote(candidate)
    assert ws.current_model.read_bytes() == _bytes(7)


# --- the typed manifest writes back the bytes it read: same keys, same order, unknown keys kept

CREATED = ["version", "parent", "time", "reason", "corrections", "loss", "metrics", "gate"]


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
