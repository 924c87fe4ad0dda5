"""People touching the model store while the real ``mlupdated run`` runs (or between
two runs): deleted and emptied manifests, deleted and hand-placed models.

Each test starts the daemon the way a user does and reads only what a user reads: the
files in ``models/``, ``mlupdated status`` and the log lines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mlupdated.coreml.spec import serialize
from mlupdated.faults import SWAP_DELAY_ENV
from mlupdated.service.store import ModelStore
from mlupdated.service.workspace import Workspace as StoreWorkspace

from tests.daemon.conftest import (
    IMAGE_SIZE,
    Workspace,
    cli,
    make_photo,
    sha256_of,
    status,
    wrong_photos,
)
from tests.helpers.updatable_specs import build_updatable_spec

# The store notices within a few checks; a failure should not wait a minute.
NOTICE_TIMEOUT = 20.0


def other_model(seed: int, classes: tuple[str, ...] = ("Cat", "Dog")) -> bytes:
    """A model of the workspace's kind (same inputs) with other weights, or labels."""
    spec = build_updatable_spec(
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        conv_channels=4,
        hidden=8,
        classes=classes,
        epochs=10,
        learning_rate=0.1,
        batch_size=4,
        batch_sizes=(2, 4, 8, 10),
        weight_seed=seed,
    )
    return serialize(spec)


def add_versions(ws: Workspace, seeds: list[int], *, promote: bool = True) -> list[int]:
    """Store (and promote) models as updates would, before the daemon starts."""
    store = ModelStore(StoreWorkspace(ws.root))
    made = []
    for seed in seeds:
        version = store.add_version(other_model(seed), parent=None, reason="update", corrections=[])
        if promote:
            store.promote(version)
        made.append(version)
    return made


def version_file(ws: Workspace, version: int) -> Path:
    return ws.root / "models" / "versions" / f"{version:04d}.mlmodel"


def no_tracebacks(daemon) -> None:
    assert not [r for r in daemon.records if "exception" in r or "Traceback" in r["event"]]


# --- 1. versions deleted: the manifest is rebuilt, never the workspace ---------------------


def test_deleted_manifest_is_rebuilt_from_the_versions_at_restart(workspace, daemons) -> None:
    add_versions(workspace, [11, 12])
    kept = {v: sha256_of(version_file(workspace, v)) for v in (1, 2, 3)}
    (workspace.root / "models" / "manifest.json").unlink()

    daemon = daemons(workspace).start()
    daemon.wait_for(event="rebuilt from models/versions/")
    assert {v: sha256_of(version_file(workspace, v)) for v in (1, 2, 3)} == kept
    assert sha256_of(workspace.current_model) == kept[3]
    assert status(workspace.root)["version"] == 3
    assert [e["version"] for e in workspace.manifest()["versions"]] == [1, 2, 3]
    assert daemon.stop() == 0
    # Numbering goes on: the next version is 4, not a reused 2.
    assert add_versions(workspace, [13], promote=False) == [4]


def test_manifest_deleted_while_running_is_rebuilt_at_once(workspace, daemons) -> None:
    add_versions(workspace, [14, 15])
    daemon = daemons(workspace).start()
    (workspace.root / "models" / "manifest.json").unlink()
    record = daemon.wait_for(event="rebuilt from models/versions/", timeout=NOTICE_TIMEOUT)
    assert record["event"].startswith("models/manifest.json missing")
    assert [e["version"] for e in workspace.manifest()["versions"]] == [1, 2, 3]
    assert status(workspace.root)["version"] == 3
    assert daemon.stop() == 0
    no_tracebacks(daemon)


# --- 2. a model placed by hand is adopted, or refused in one line --------------------------


def test_hand_placed_model_is_adopted_as_a_new_version(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    placed = other_model(21)
    workspace.current_model.write_bytes(placed)  # as `cp mine.mlmodel current.mlmodel`
    record = daemon.wait_for(event="replaced by hand", timeout=NOTICE_TIMEOUT)
    assert record["version"] == 2
    assert version_file(workspace, 2).read_bytes() == placed
    assert workspace.current_model.read_bytes() == placed
    entry = workspace.manifest()["versions"][-1]
    assert (entry["version"], entry["reason"], entry["promoted"]) == (2, "placed by hand", True)
    assert status(workspace.root)["version"] == 2
    # A rollback goes back from the hand-placed model to the one it replaced.
    done = cli("rollback", "--workspace", str(workspace.root))
    assert done.returncode == 0, done.stderr
    assert sha256_of(workspace.current_model) == sha256_of(version_file(workspace, 1))
    assert daemon.stop() == 0
    no_tracebacks(daemon)


def test_update_finishing_after_a_hand_placed_model_is_not_promoted_over_it(
    workspace, daemons, tmp_path
) -> None:
    daemon = daemons(workspace, env={SWAP_DELAY_ENV: "6"}).start()
    label, photos = wrong_photos(workspace, tmp_path, count=10)
    for photo in photos:  # moved in whole, as a sync tool's rename
        os.replace(photo, workspace.corrections / label / photo.name)
    daemon.wait_for(event="test hook: delaying the swap", version=2)
    placed = other_model(23)
    workspace.current_model.write_bytes(placed)  # while version 2 waits for its swap
    finished = daemon.wait_for(event="update finished")
    # Abandoned, whether the periodic check adopted the model before the swap or the
    # swap itself found it.
    assert finished["outcome"] == "abandoned"
    assert "a model placed by hand is current (version 3)" in finished["reason"]
    assert workspace.current_model.read_bytes() == placed == version_file(workspace, 3).read_bytes()
    assert status(workspace.root)["version"] == 3
    assert status(workspace.root)["trained"] == 0  # the corrections wait for the next update
    assert daemon.stop() == 0
    no_tracebacks(daemon)  # a refusal we know is one line


def test_hand_placed_model_with_other_labels_is_refused(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    first = workspace.current_model.read_bytes()
    wrong = other_model(22, classes=("Cat", "Dog", "Bird"))
    workspace.current_model.write_bytes(wrong)
    record = daemon.wait_for(event="does not fit this workspace", timeout=NOTICE_TIMEOUT)
    assert "class labels Bird, Cat, Dog instead of Cat, Dog" in record["event"]
    assert record["version"] == 1
    assert workspace.current_model.read_bytes() == first
    refused = workspace.root / "models" / "current.mlmodel.refused"
    assert refused.read_bytes() == wrong  # the person's model is kept, not lost
    assert [e["version"] for e in workspace.manifest()["versions"]] == [1]
    assert status(workspace.root)["version"] == 1
    assert daemon.stop() == 0
    no_tracebacks(daemon)


# --- 4. an empty manifest: one line, rebuilt, and the inbox photo still classified ---------


def _keep_emptying(manifest: Path, daemon, *, since: int, until: str) -> None:
    """Empty the manifest again and again, as an editor saving it would (so the daemon
    waits for it to settle), until the daemon logs ``until``."""
    deadline = time.monotonic() + NOTICE_TIMEOUT
    while not daemon.find(since=since, event=until):
        assert time.monotonic() < deadline, f"no log line {until!r}"
        manifest.write_text("")
        time.sleep(0.3)


def test_emptied_manifest_is_rebuilt_and_the_inbox_photo_classified(workspace, daemons) -> None:
    add_versions(workspace, [31])
    manifest = workspace.root / "models" / "manifest.json"
    daemon = daemons(workspace).start()
    mark = daemon.mark()
    manifest.write_text("")
    make_photo(workspace.root / "inbox" / "new.png", "red", 7)
    _keep_emptying(manifest, daemon, since=mark, until="waiting for a usable model")

    record = daemon.wait_for(since=mark, event="rebuilt from models/versions/")
    assert record["event"].startswith("models/manifest.json unreadable (empty)")
    daemon.wait_for(since=mark, event="inbox: classified", path="inbox/new.png")
    assert len(daemon.find(since=mark, event="rebuilt from models/versions/")) == 1
    assert (workspace.root / "models" / "manifest.json.broken").read_text() == ""
    assert status(workspace.root)["version"] == 2
    assert predicted(workspace) == ["inbox/new.png"]
    assert daemon.stop() == 0
    no_tracebacks(daemon)


def test_inbox_photo_waiting_for_the_manifest_survives_a_restart(workspace, daemons) -> None:
    manifest = workspace.root / "models" / "manifest.json"
    first = daemons(workspace).start()
    mark = first.mark()
    manifest.write_text("")
    make_photo(workspace.root / "inbox" / "waits.png", "blue", 8)
    _keep_emptying(manifest, first, since=mark, until="waiting for a usable model")
    manifest.write_text("")  # fresh again: the daemon stops before it rebuilds it
    assert first.stop() == 0
    assert manifest.read_text() == "" and predicted(workspace) == []

    second = daemons(workspace).start()
    second.wait_for(event="inbox: classified", path="inbox/waits.png")
    assert predicted(workspace) == ["inbox/waits.png"]
    assert second.stop() == 0
    no_tracebacks(first)
    no_tracebacks(second)


def predicted(ws: Workspace) -> list[str]:
    log = ws.root / "predictions.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["path"] for line in lines]


def test_status_and_rollback_say_how_to_repair_an_empty_manifest(workspace, daemons) -> None:
    add_versions(workspace, [41])
    daemons(workspace).start().stop()
    (workspace.root / "models" / "manifest.json").write_text("")
    for command in ("status", "rollback"):
        done = cli(command, "--workspace", str(workspace.root))
        assert done.returncode == 2
        (line,) = done.stderr.splitlines()
        assert "manifest unreadable (empty)" in line and "mlupdated repair" in line, line
    done = cli("repair", "--workspace", str(workspace.root))
    assert done.returncode == 0, done.stderr
    assert "rebuilt" in done.stdout
    assert status(workspace.root)["version"] == 2
    # Deleted rather than emptied: the same hint, not "not a workspace".
    (workspace.root / "models" / "manifest.json").unlink()
    for command in ("status", "rollback"):
        done = cli(command, "--workspace", str(workspace.root))
        (line,) = done.stderr.splitlines()
        assert done.returncode == 2 and "manifest missing" in line, line
        assert "mlupdated repair" in line, line


# --- 11. a deleted current model is restored; init lists the model's labels ----------------


def test_deleted_current_model_is_restored_from_the_newest_promotion(workspace, daemons) -> None:
    add_versions(workspace, [51, 52])
    add_versions(workspace, [53], promote=False)  # stored, never promoted: not restored
    daemon = daemons(workspace).start()
    os.unlink(workspace.current_model)
    record = daemon.wait_for(event="current.mlmodel was deleted", timeout=NOTICE_TIMEOUT)
    assert record["version"] == 3
    assert sha256_of(workspace.current_model) == sha256_of(version_file(workspace, 3))
    assert status(workspace.root)["version"] == 3
    assert daemon.stop() == 0
    no_tracebacks(daemon)


def test_init_lists_the_model_labels_not_the_folders(tmp_path, model_path) -> None:
    target = tmp_path / "ws"
    (target / "corrections" / "Stray").mkdir(parents=True)
    done = cli("init", str(target), "--model", str(model_path))
    assert done.returncode == 0, done.stderr
    assert "(labels: Cat, Dog)" in done.stdout


def test_init_refuses_a_model_whose_label_is_a_path(tmp_path) -> None:
    # A model may carry any string as a class label; none becomes a path.
    model = tmp_path / "odd.mlmodel"
    model.write_bytes(build_updatable_spec(classes=("Cat", "../escape")).SerializeToString())
    done = cli("init", str(tmp_path / "ws"), "--model", str(model))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("class label '../escape' cannot be a folder name")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "escape").exists()
