"""What the corrections went through: gate rejections per revision, the re-queue after a
rollback (and the line of versions it follows), conflicts, removals after training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mlupdated.service.queue import Queue
from mlupdated.service.store import VersionEntry
from mlupdated.service.update.rollback import in_line


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    q = Queue(tmp_path / "state" / "mlupdated.db")
    yield q
    q.close()


def _add(q: Queue, path: str, content: str):
    sha = hashlib.sha256(content.encode()).hexdigest()
    label = path.split("/")[1]
    return q.upsert_correction(path=path, sha256=sha, label=label, size=1, mtime=1.0)


def _run(q: Queue, ids: list[int], outcome: str) -> None:
    run = q.start_run(correction_ids=ids, policy="incremental")
    q.finish_run(run, outcome=outcome, version=None, loss=None, metrics={}, reason="r", duration=0)


def test_gate_rejections_count_per_revision(queue: Queue) -> None:
    a = _add(queue, "corrections/Cat/a.jpg", "a").correction
    b = _add(queue, "corrections/Cat/b.jpg", "b").correction
    _run(queue, [a.id, b.id], "rejected")
    _run(queue, [a.id], "failed")  # not the gate's doing
    _run(queue, [a.id], "rejected")
    assert queue.gate_rejections([a.id, b.id]) == {a.id: 2, b.id: 1}
    # Relabelled: a new revision, a fresh count (and a rejected one is pending again).
    queue.mark_rejected([a.id], "gave up")
    assert _add(queue, "corrections/Dog/a.jpg", "a").correction.state == "pending"
    assert queue.gate_rejections([a.id, b.id]) == {b.id: 1}


def test_requeue_follows_the_versions_line(queue: Queue) -> None:
    ids = [_add(queue, f"corrections/Cat/{n}.jpg", n).correction.id for n in "abcd"]
    for cid, version in zip(ids, (2, 3, 4, 5), strict=True):
        queue.mark_trained([cid], version)
    # 5's parent is 4, 4's is 2 (3 was rolled back before); 2's entry is gone (retention).
    entries = [
        VersionEntry(version=1, parent=None),
        VersionEntry(version=3, parent=2),
        VersionEntry(version=4, parent=2),
        VersionEntry(version=5, parent=4),
    ]
    keep = in_line(entries, 4)
    assert [v for v in range(1, 7) if keep(v)] == [1, 2, 4]
    back = queue.requeue_trained(keep)
    assert sorted(c.version for c in back) == [3, 5]
    assert {c.id for c in queue.pending()} == {ids[1], ids[3]}


def test_requeue_retracts_a_correction_whose_files_are_gone(queue: Queue) -> None:
    a = _add(queue, "corrections/Cat/a.jpg", "a").correction
    queue.mark_trained([a.id], 2)
    assert queue.learned_only_at("corrections/Cat/a.jpg").version == 2
    assert queue.retract_path("corrections/Cat/a.jpg") is False  # trained: kept
    assert queue.requeue_trained(lambda v: v < 2) == []
    assert queue.counts()["retracted"] == 1 and queue.pending() == []


def test_conflicts_list_images_under_two_labels(queue: Queue) -> None:
    _add(queue, "corrections/Cat/x.jpg", "x")
    change = _add(queue, "corrections/Dog/x.jpg", "x")
    assert change.kind == "relabelled" and change.conflicts == ("corrections/Cat/x.jpg",)
    _add(queue, "corrections/Cat/y.jpg", "y")
    assert _add(queue, "corrections/Cat/y2.jpg", "y").conflicts == ()  # same label: a copy
    (conflict,) = queue.conflicts()
    assert conflict.label == "Dog"
    assert conflict.paths == {"corrections/Cat/x.jpg": "Cat", "corrections/Dog/x.jpg": "Dog"}
    queue.retract_path("corrections/Cat/x.jpg")
    assert queue.conflicts() == []


def test_a_correction_the_gate_gave_up_on_is_retried_when_dropped_again(queue: Queue) -> None:
    from mlupdated.service.queue.corrections import GATE_GAVE_UP

    a = _add(queue, "corrections/Cat/a.jpg", "a").correction
    queue.mark_rejected([a.id], f"{GATE_GAVE_UP} 3 times: worse")
    assert _add(queue, "corrections/Cat/a.jpg", "a").kind == "unchanged"  # a rescan
    queue.retract_path("corrections/Cat/a.jpg")
    again = _add(queue, "corrections/Cat/a.jpg", "a")
    assert again.kind == "new" and again.correction.state == "pending"
    # An unusable image stays rejected: dropping it again changes nothing.
    b = _add(queue, "corrections/Cat/b.jpg", "b").correction
    queue.mark_rejected([b.id], "unreadable image")
    assert _add(queue, "corrections/Cat/b2.jpg", "b").kind == "duplicate"
