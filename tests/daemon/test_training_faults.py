"""A training child that crashes, hangs or produces NaN: a failed run, never a dead daemon.

The faults are injected with the worker's documented test hook
(``MLUPDATED_TEST_WORKER_FAULT``), which the daemon passes on to its training child.
"""

from __future__ import annotations

import shutil

import pytest
from mlupdated.service.update.runner import FAULT_ENV

from tests.daemon.conftest import child_pids, sha256_of, status, wait_gone, wrong_photos


def _drop(workspace, tmp_path, count: int = 2) -> None:
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=count)
    for photo in photos:
        shutil.copy2(photo, workspace.corrections / label / photo.name)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("crash", "killed by signal 9"), ("nan", "non-finite weights in dense_5")],
)
def test_bad_training_is_a_failed_run(workspace, daemons, tmp_path, fault, reason) -> None:
    workspace.write_config(update={"min_batch": 2})
    before = sha256_of(workspace.current_model)
    daemon = daemons(workspace, {FAULT_ENV: fault}).start()
    _drop(workspace, tmp_path)
    first = daemon.wait_for(event="update finished", timeout=90)
    assert first["outcome"] == "failed"
    assert reason in first["reason"]
    # Retried after the back-off, and failing the same way; the daemon lives on.
    second = daemon.wait_for(event="update finished", since=daemon.records.index(first) + 1)
    assert second["outcome"] == "failed"
    assert daemon.proc.poll() is None
    state = status(workspace.root)
    assert state["pending"] == {next(iter(state["pending"])): 2}
    assert state["version"] == 1
    assert state["last_run"]["outcome"] == "failed"
    assert sha256_of(workspace.current_model) == before
    assert daemon.stop() == 0


def test_hang_times_out_and_sigterm_abandons_a_running_update(workspace, daemons, tmp_path) -> None:
    workspace.write_config(
        update={"min_batch": 2, "timeout_seconds": 4}, daemon={"shutdown_timeout": 1}
    )
    daemon = daemons(workspace, {FAULT_ENV: "hang"}).start()
    _drop(workspace, tmp_path)
    first = daemon.wait_for(event="update finished", timeout=90)
    assert first["outcome"] == "failed"
    assert "no result within 4 s" in first["reason"]

    # The retry hangs too; SIGTERM now must abandon it and exit 0 within the timeout.
    retry = daemon.wait_for(event="training progress", since=daemon.records.index(first) + 1)
    assert retry["note"] == "test hook: hanging"
    trainers = child_pids(daemon.pid)
    assert trainers
    daemon.stop(timeout=1 + 10 + 5)
    assert daemon.proc.returncode == 0
    assert daemon.find(event="update finished", outcome="abandoned")
    assert wait_gone(trainers) == []
    state = status(workspace.root)
    assert state["last_run"]["outcome"] == "abandoned"
    assert sum(state["pending"].values()) == 2
    assert state["daemon"]["running"] is False
