"""The SQLite queue: dedup, relabel, retract, runs, durability and locking."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from mlupdated.errors import StoreError
from mlupdated.service.queue import SCHEMA_VERSION, Queue


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    q = Queue(tmp_path / "state" / "mlupdated.db")
    yield q
    q.close()


def _add(q: Queue, path: str, content: str, label: str | None = None):
    label = label or path.split("/")[1]
    return q.upsert_correction(path=path, sha256=_sha(content), label=label, size=1, mtime=1.0)


def test_wal_mode_and_schema_version(queue: Queue) -> None:
    assert queue.journal_mode() == "wal"
    conn = sqlite3.connect(queue.db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_new_then_unchanged(queue: Queue) -> None:
    first = _add(queue, "corrections/Cat/a.jpg", "a")
    assert first.kind == "new"
    assert first.correction.label == "Cat" and first.correction.state == "pending"
    assert _add(queue, "corrections/Cat/a.jpg", "a").kind == "unchanged"
    assert queue.pending_counts() == {"Cat": 1}


def test_same_bytes_twice_same_label_is_one_correction(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a.jpg", "a")
    dup = _add(queue, "corrections/Cat/a.sync-conflict-20250101-120000-ABCDEFG.jpg", "a")
    assert dup.kind == "duplicate"
    assert len(queue.pending()) == 1
    # Different bytes under a conflict name are a separate correction.
    other = _add(queue, "corrections/Cat/a.sync-conflict-20250102-120000-ABCDEFG.jpg", "b")
    assert other.kind == "new"
    assert queue.counts()["pending"] == 2


def test_same_bytes_other_label_latest_wins(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a.jpg", "a")
    change = _add(queue, "corrections/Dog/a.jpg", "a")
    assert change.kind == "relabelled" and change.previous_label == "Cat"
    assert queue.pending_counts() == {"Dog": 1}
    (only,) = queue.pending()
    assert only.path == "corrections/Dog/a.jpg"


def test_move_between_labels_relabels(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a.jpg", "a")
    assert _add(queue, "corrections/Dog/a.jpg", "a").kind == "relabelled"
    assert queue.retract_path("corrections/Cat/a.jpg") is False
    assert queue.pending_counts() == {"Dog": 1}
    assert queue.correction_paths() == {"corrections/Dog/a.jpg": "Dog"}


def test_removing_the_newest_copy_falls_back_to_the_older_label(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a.jpg", "a")
    _add(queue, "corrections/Dog/copy.jpg", "a")
    queue.retract_path("corrections/Dog/copy.jpg")
    assert queue.pending_counts() == {"Cat": 1}


def test_retract_pending(queue: Queue) -> None:
    change = _add(queue, "corrections/Cat/a.jpg", "a")
    _add(queue, "corrections/Cat/b.jpg", "a")
    assert queue.retract_path("corrections/Cat/a.jpg") is False  # b.jpg still holds it
    assert queue.retract_path("corrections/Cat/b.jpg") is True
    assert queue.counts()["retracted"] == 1 and queue.pending() == []
    assert queue.correction(change.correction.id).state == "retracted"
    assert queue.retract_path("corrections/Cat/unknown.jpg") is False
    # Dropped again: pending again.
    assert _add(queue, "corrections/Cat/a.jpg", "a").kind == "new"
    assert queue.counts()["pending"] == 1


def test_retract_after_training_keeps_what_was_learned(queue: Queue) -> None:
    cid = _add(queue, "corrections/Cat/a.jpg", "a").correction.id
    run = queue.start_run(correction_ids=[cid], policy="incremental")
    assert queue.mark_trained([cid], 2) == 1
    queue.finish_run(
        run, outcome="promoted", version=2, loss=0.1, metrics={}, reason=None, duration=1.0
    )
    assert queue.retract_path("corrections/Cat/a.jpg") is False
    assert queue.correction(cid).state == "trained"
    assert queue.correction(cid).version == 2


def test_relabel_of_a_trained_correction_goes_back_to_pending(queue: Queue) -> None:
    cid = _add(queue, "corrections/Cat/a.jpg", "a").correction.id
    queue.mark_trained([cid], 2)
    change = _add(queue, "corrections/Dog/a.jpg", "a")
    assert change.kind == "relabelled"
    assert queue.correction(cid).state == "pending" and queue.correction(cid).label == "Dog"


def test_relabel_during_a_run_is_not_marked_trained(queue: Queue) -> None:
    a = _add(queue, "corrections/Cat/a.jpg", "a").correction.id
    b = _add(queue, "corrections/Cat/b.jpg", "b").correction.id
    queue.start_run(correction_ids=[a, b], policy="incremental")
    _add(queue, "corrections/Dog/a.jpg", "a")  # the user changes their mind mid-run
    assert queue.mark_trained([a, b], 2) == 1
    assert queue.correction(a).state == "pending" and queue.correction(a).label == "Dog"
    assert queue.correction(b).state == "trained"


def test_changed_content_at_same_path(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a.jpg", "old")
    change = _add(queue, "corrections/Cat/a.jpg", "new")
    assert change.kind == "new"
    assert queue.counts() == {"pending": 1, "trained": 0, "rejected": 0, "retracted": 1}


def test_counts_times_and_rejection(queue: Queue) -> None:
    assert queue.oldest_pending_time() is None and queue.last_drop_time() is None
    a = _add(queue, "corrections/Cat/a.jpg", "a").correction
    b = _add(queue, "corrections/Dog/b.jpg", "b").correction
    assert queue.oldest_pending_time() == pytest.approx(a.first_seen)
    assert queue.last_drop_time() >= b.first_seen
    assert queue.mark_rejected([a.id], "unreadable image") == 1
    assert queue.correction(a.id).reason == "unreadable image"
    assert queue.counts() == {"pending": 1, "trained": 0, "rejected": 1, "retracted": 0}


def test_trained_sample_is_seeded(queue: Queue) -> None:
    ids = [_add(queue, f"corrections/Cat/{i}.jpg", str(i)).correction.id for i in range(30)]
    queue.mark_trained(ids, 2)
    one = [c.id for c in queue.trained_sample(5, seed=1)]
    assert one == [c.id for c in queue.trained_sample(5, seed=1)]
    assert len(set(one)) == 5 and set(one) <= set(ids)
    assert len(queue.trained_sample(100, seed=1)) == 30
    assert [c.id for c in queue.all_trained()] == ids


def test_runs_and_interrupted(queue: Queue) -> None:
    assert queue.last_run() is None
    a = _add(queue, "corrections/Cat/a.jpg", "a").correction.id
    r1 = queue.start_run(correction_ids=[a], policy="replay")
    assert [r.id for r in queue.interrupted_runs()] == [r1]
    assert queue.last_run().outcome is None
    queue.finish_run(
        r1,
        outcome="rejected",
        version=2,
        loss=0.5,
        metrics={"accuracy": 0.5},
        reason="worse",
        duration=2.0,
    )
    run = queue.last_run()
    assert run.outcome == "rejected" and run.metrics == {"accuracy": 0.5}
    assert run.corrections == [a] and run.policy == "replay"
    assert queue.interrupted_runs() == []
    # The JSON form (what ``status --json`` shows) is the table's columns, in order.
    columns = [r["name"] for r in queue.db.read("PRAGMA table_info(runs)")]
    assert list(run.to_dict()) == columns
    with pytest.raises(ValueError):
        queue.finish_run(
            r1, outcome="exploded", version=None, loss=None, metrics={}, reason=None, duration=0
        )


def test_errors_and_predictions(queue: Queue) -> None:
    queue.record_error("intake", "corrections/Cat/x.jpg", "not an image")
    queue.record_error("update", None, "diverged")
    errors = queue.recent_errors(5)
    assert [e["reason"] for e in errors] == ["diverged", "not an image"]
    queue.record_prediction(
        path="inbox/a.jpg",
        sha256=_sha("a"),
        label="Cat",
        probabilities={"Cat": 0.9, "Dog": 0.1},
        version=1,
    )
    queue.record_prediction(
        path="inbox/a.jpg",
        sha256=_sha("a"),
        label="Dog",
        probabilities={"Cat": 0.1, "Dog": 0.9},
        version=1,
    )
    found = queue.prediction_for(_sha("a"), 1)
    assert found["label"] == "Cat"  # the first answer of a version stays
    assert queue.prediction_for(_sha("a"), 2) is None
    assert queue.prediction_for(_sha("a"))["version"] == 1


def test_seen_files(queue: Queue) -> None:
    assert queue.seen_file("inbox/a.jpg") is None
    queue.mark_seen("inbox/a.jpg", 10, 1.5, _sha("a"))
    assert queue.seen_file("inbox/a.jpg") == (10, 1.5, _sha("a"))
    queue.mark_seen("inbox/a.jpg", 11, 2.5, _sha("b"))
    assert queue.seen_files() == {"inbox/a.jpg": (11, 2.5, _sha("b"))}
    assert queue.seen_paths("inbox/") == ["inbox/a.jpg"]
    queue.forget_seen("inbox/a.jpg")
    assert queue.seen_file("inbox/a.jpg") is None


def test_prefix_queries_escape_wildcards(queue: Queue) -> None:
    _add(queue, "corrections/Cat/a_b/x.jpg", "x")
    _add(queue, "corrections/Cat/aXb/y.jpg", "y")
    assert list(queue.correction_paths("corrections/Cat/a_b/")) == ["corrections/Cat/a_b/x.jpg"]


def test_threads_share_one_queue(queue: Queue) -> None:
    def worker(n: int) -> None:
        for i in range(20):
            _add(queue, f"corrections/Cat/{n}-{i}.jpg", f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.counts()["pending"] == 80


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from mlupdated.service.queue import Queue
    q = Queue(sys.argv[1])
    for i in range(50):
        q.upsert_correction(path=f"corrections/Cat/{i}.jpg", sha256=f"{i:064x}", label="Cat",
                            size=i, mtime=1.0)
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_reopen_after_kill_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "state" / "mlupdated.db"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(db)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL and "written" in proc.stdout
    q = Queue(db)
    try:
        assert q.counts()["pending"] == 50
        assert len(q.correction_paths()) == 50
        assert q.journal_mode() == "wal"
    finally:
        q.close()


_LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO meta(key, value) VALUES('holder', '1')")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    """
)


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(db), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_by_another_process_is_a_clear_store_error(tmp_path: Path) -> None:
    db = tmp_path / "mlupdated.db"
    Queue(db).close()
    holder = _hold_lock(db, 5.0)
    q = Queue(db, busy_timeout=0.2)
    try:
        with pytest.raises(StoreError) as info:
            _add(q, "corrections/Cat/a.jpg", "a")
        assert str(db) in str(info.value) and "locked" in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # Nothing half-written; the queue works once the other process is gone.
    assert _add(q, "corrections/Cat/a.jpg", "a").kind == "new"
    q.close()


def test_waits_for_a_short_lock(tmp_path: Path) -> None:
    db = tmp_path / "mlupdated.db"
    Queue(db).close()
    holder = _hold_lock(db, 0.5)
    q = Queue(db, busy_timeout=30)
    try:
        assert _add(q, "corrections/Cat/a.jpg", "a").kind == "new"
    finally:
        holder.wait()
        q.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "mlupdated.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Queue(db)


def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "mlupdated.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=str(db)):
        Queue(db)


_FULL_WRITER = textwrap.dedent(
    """
    import os, resource, signal, sys
    from mlupdated.errors import DiskFullError, StoreError
    from mlupdated.service.queue import Queue
    db = sys.argv[1]
    q = Queue(db)
    for i in range(10):
        q.upsert_correction(path=f"corrections/Cat/{i}.jpg", sha256=f"{i:064x}", label="Cat",
                            size=i, mtime=1.0)
    # A real kernel refusal: writes past the file size limit fail with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    folder = os.path.dirname(db)
    biggest = max(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 4096, resource.RLIM_INFINITY))
    written = 10
    try:
        for i in range(10, 100000):
            q.upsert_correction(path=f"corrections/Cat/{i}-{'x' * 200}.jpg",
                                sha256=f"{i:064x}", label="Cat", size=i, mtime=1.0)
            written += 1
    except DiskFullError as exc:
        print("full", written, str(exc).replace(chr(10), " "), flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    q.upsert_correction(path="corrections/Cat/after.jpg", sha256="f" * 64, label="Cat",
                        size=1, mtime=1.0)
    print("recovered", q.counts()["pending"], flush=True)
    """
)


def test_disk_full_is_a_clear_error_and_the_queue_survives(tmp_path: Path) -> None:
    db = tmp_path / "state" / "mlupdated.db"
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_WRITER, str(db)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    full, recovered = proc.stdout.strip().splitlines()
    _word, written, message = full.split(" ", 2)
    assert message.startswith(f"{db}: disk full while writing the queue")
    assert recovered == f"recovered {int(written) + 1}"
    q = Queue(db)
    try:
        assert q.counts()["pending"] == int(written) + 1
    finally:
        q.close()
