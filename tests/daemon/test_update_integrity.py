"""Updates and rollbacks keep the queue honest: bounded gate retries, rollback sends
corrections back to pending, a rollback during a promotion stands."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mlupdated.faults import SWAP_DELAY_ENV

from tests.daemon.conftest import cli, make_photo, sha256_of, status, wrong_photos

BATCH = 10


def _other(label: str) -> str:
    return "Dog" if label == "Cat" else "Cat"


def _learn_first_batch(workspace, daemon, tmp_path: Path) -> str:
    """Drop ten photos the model gets wrong; wait for version 2; return their label."""
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=BATCH)
    mark = daemon.mark()
    for photo in photos:
        shutil.copy2(photo, workspace.corrections / label / photo.name)
    done = daemon.wait_for(event="update finished", since=mark, timeout=120)
    assert done["outcome"] == "promoted", done.get("reason")
    assert done["version"] == 2
    return label


def _version_files(workspace) -> list[str]:
    return sorted(p.name for p in (workspace.root / "models" / "versions").iterdir())


def test_a_batch_the_gate_keeps_rejecting_ends_rejected(workspace, daemons, tmp_path) -> None:
    workspace.write_config(update={"max_attempts": 2}, store={"keep_versions": 1})
    daemon = daemons(workspace).start()
    label = _learn_first_batch(workspace, daemon, tmp_path)
    # The same kind of photo under the opposite label: a model trained on them forgets
    # the ten the user taught it before, so the gate refuses it, every time.
    mark = daemon.mark()
    flipped = _other(label)
    for i in range(BATCH):
        make_photo(workspace.corrections / flipped / f"flip{i}.png", "red", 300 + i)
    gave_up = daemon.wait_for(event="corrections rejected for good", since=mark, timeout=180)
    assert gave_up["corrections"] == BATCH and gave_up["attempts"] == 2
    assert "below the current model" in gave_up["reason"]
    runs = daemon.find(event="update finished", since=mark)
    assert [r["outcome"] for r in runs] == ["rejected", "rejected"]

    state = status(workspace.root)
    assert state["rejected"] == BATCH and state["trained"] == BATCH
    assert sum(state["pending"].values()) == 0
    assert state["version"] == 2
    refused = [e for e in state["recent_errors"] if e["kind"] == "rejected"]
    assert refused and "the gate rejected the model trained on it 2 times" in refused[0]["reason"]
    assert refused[0]["path"].startswith(f"corrections/{flipped}/flip")
    # Retention covers rejected candidates: version 1, the current one and the newest.
    assert _version_files(workspace) == ["0001.mlmodel", "0002.mlmodel", "0004.mlmodel"]
    assert [e["version"] for e in workspace.manifest()["versions"]] == [1, 2, 4]

    # Nothing is left to retry: the scheduler stays idle (several ticks and back-offs).
    time.sleep(4)
    assert len(daemon.find(event="update started", since=mark)) == 2
    # New corrections are a fresh batch, tried again.
    mark = daemon.mark()
    for i in range(BATCH):
        make_photo(workspace.corrections / flipped / f"later{i}.png", "red", 400 + i)
    started = daemon.wait_for(event="update started", since=mark, timeout=120)
    assert started["corrections"] == BATCH
    daemon.wait_for(event="update finished", since=mark, timeout=120)
    assert daemon.stop() == 0


def test_rollback_sends_the_corrections_of_the_newer_version_back(
    workspace, daemons, tmp_path
) -> None:
    daemon = daemons(workspace).start()
    _learn_first_batch(workspace, daemon, tmp_path)
    mark = daemon.mark()
    done = cli("rollback", "--workspace", str(workspace.root))
    assert done.returncode == 0, done.stderr
    assert "version 1 is current (was 2)" in done.stdout
    assert f"{BATCH} corrections learned by version 2 are pending again" in done.stdout
    # The daemon learns them again, onto version 1.
    finished = daemon.wait_for(event="update finished", since=mark, timeout=120)
    assert finished["outcome"] == "promoted", finished.get("reason")
    entry = workspace.manifest()["versions"][-1]
    assert (entry["version"], entry["parent"]) == (3, 1)
    assert entry["corrections"]["count"] == BATCH
    state = status(workspace.root)
    assert state["version"] == 3 and state["trained"] == BATCH
    assert daemon.stop() == 0


def test_a_rollback_during_the_swap_is_not_overridden(workspace, daemons, tmp_path) -> None:
    # The fault seam holds the daemon between "model version stored" and the swap.
    daemon = daemons(workspace, env={SWAP_DELAY_ENV: "8"}).start()
    label = _learn_first_batch(workspace, daemon, tmp_path)
    mark = daemon.mark()
    for i in range(BATCH):
        make_photo(workspace.corrections / label / f"more{i}.png", "red", 500 + i)
    daemon.wait_for(event="test hook: delaying the swap", version=3, since=mark, timeout=120)
    done = cli("rollback", "--workspace", str(workspace.root))
    assert done.returncode == 0, done.stderr
    assert "version 1 is current (was 2)" in done.stdout
    finished = daemon.wait_for(event="update finished", since=mark, timeout=60)
    assert finished["outcome"] == "abandoned"
    assert finished["reason"] == "current model changed during the run"
    manifest = workspace.manifest()
    assert manifest["current"] == 1
    first = next(e for e in manifest["versions"] if e["version"] == 1)
    assert sha256_of(workspace.current_model) == first["sha256"]
    assert not next(e for e in manifest["versions"] if e["version"] == 3)["promoted"]
    # What the user was told stands, and nothing that version 3 saw counts as trained.
    state = status(workspace.root)
    assert state["version"] == 1 and state["trained"] == 0
    assert daemon.stop() == 0
