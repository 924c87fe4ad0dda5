"""kill -9 in the middle of an update and in the middle of a swap, then restart."""

from __future__ import annotations

import shutil

from mlupdated.coreml.proto import Model_pb2
from mlupdated.service.update.runner import AFTER_SWAP_DELAY_ENV, FAULT_ENV, SWAP_DELAY_ENV

from tests.daemon.conftest import child_pids, predict, sha256_of, status, wait_gone, wrong_photos


def _parses(path) -> bool:
    spec = Model_pb2.Model()
    spec.ParseFromString(path.read_bytes())
    return spec.WhichOneof("Type") is not None


def test_kill_9_during_update_and_swap_loses_nothing(workspace, daemons, tmp_path) -> None:
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=10)
    original = sha256_of(workspace.current_model)

    # 1. Killed while the training child runs (the hook keeps it running).
    first = daemons(workspace, {FAULT_ENV: "hang"}).start()
    for photo in photos:
        shutil.copy2(photo, workspace.corrections / label / photo.name)
    first.wait_for(event="training progress", timeout=90)
    trainers = child_pids(first.pid)
    assert trainers
    first.kill9()
    # The orphaned trainer notices its parent is gone and exits by itself.
    assert wait_gone(trainers) == []
    assert _parses(workspace.current_model)
    assert sha256_of(workspace.current_model) == original

    # 2. Restarted: the interrupted run is redone at once; killed inside the swap (after
    #    the new version is written, before it becomes current).
    second = daemons(workspace, {SWAP_DELAY_ENV: "30"}).start()
    abandoned = second.wait_for(event="interrupted run abandoned")
    assert abandoned["corrections"] == 10
    second.wait_for(event="test hook: delaying the swap", timeout=90)
    second.kill9()
    assert _parses(workspace.current_model)
    assert sha256_of(workspace.current_model) == original

    # 3. Restarted again: redone; killed after the swap, before the bookkeeping.
    third = daemons(workspace, {AFTER_SWAP_DELAY_ENV: "30"}).start()
    third.wait_for(event="interrupted run abandoned")
    swapped = third.wait_for(event="test hook: delaying after the swap", timeout=90)
    third.kill9()
    assert _parses(workspace.current_model)
    assert sha256_of(workspace.current_model) != original

    # 4. Restarted: the run is recognised as swapped in; nothing is trained twice.
    fourth = daemons(workspace).start()
    done = fourth.wait_for(event="interrupted run was already swapped in")
    assert done["version"] == swapped["version"]
    assert not fourth.find(event="update started")
    finished = {"version": swapped["version"]}
    state = status(workspace.root)
    assert state["trained"] == 10
    assert sum(state["pending"].values()) == 0
    manifest = workspace.manifest()
    assert manifest["current"] == finished["version"] == state["version"]
    current = next(e for e in manifest["versions"] if e["version"] == manifest["current"])
    assert current["sha256"] == sha256_of(workspace.current_model)
    assert set(
        predict(workspace.root, [workspace.corrections / label / p.name for p in photos]).values()
    ) == {label}
    leftovers = [
        p.name
        for folder in (
            workspace.root / "models",
            workspace.root / "models" / "versions",
            workspace.root / "state",
        )
        for p in folder.iterdir()
        if p.name.startswith((".mlupdated-tmp-", "candidate-"))
    ]
    assert leftovers == []
    assert not fourth.find(event="update started")
    assert fourth.stop() == 0
