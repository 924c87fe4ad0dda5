"""The update worker's failure paths: the child crashes, hangs, diverges, or is abandoned.

Each runs the real child process (``python -m mlupdated.service.update.worker_child``)
through the documented test hooks, on a real workspace, queue and store; the daemon side must
record a failed (or abandoned) run and leave every correction pending and the current
model untouched.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlupdated.coreml.spec import save_spec
from mlupdated.fsutil import TEMP_PREFIX
from mlupdated.logs import get_logger
from mlupdated.service.config import config_from_dict
from mlupdated.service.queue import Queue
from mlupdated.service.store import ModelStore
from mlupdated.service.update.runner import FAULT_ENV, UpdateRunner, remove_stale_candidates
from mlupdated.service.workspace import init_workspace
from PIL import Image

from tests.helpers.updatable_specs import build_updatable_spec


def _colour(label: str, rng: np.random.Generator) -> np.ndarray:
    """Mostly red for Dog, mostly blue for Cat: something a tiny model can learn."""
    pixels = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
    pixels[..., 0 if label == "Dog" else 2] += 180
    return pixels


@pytest.fixture
def setup(tmp_path: Path):
    model = tmp_path / "model.mlmodel"
    save_spec(build_updatable_spec(), model)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    queue = Queue(ws.db_path)
    for i in range(4):
        _add(ws, queue, f"img{i}.png", "Cat" if i % 2 else "Dog", i)
    yield ws, queue
    queue.close()


def _add(ws, queue, name: str, label: str, seed: int) -> None:
    """Write a photo of ``label``'s colour into its corrections folder and queue it."""
    _queue_pixels(ws, queue, _colour(label, np.random.default_rng(seed)), name, label)


def _queue_pixels(ws, queue, pixels: np.ndarray, name: str, label: str) -> None:
    path = ws.corrections / label / name
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    queue.upsert_correction(
        path=path.relative_to(ws.root).as_posix(),
        sha256=hashlib.sha256(data).hexdigest(),
        label=label,
        size=len(data),
        mtime=path.stat().st_mtime,
    )


def _runner(ws, queue, *, store: dict | None = None, gate: dict | None = None, **update):
    config = config_from_dict(
        {"update": {"timeout_seconds": 60, **update}, "store": store or {}, "gate": gate or {}}
    )
    return UpdateRunner(
        workspace=ws,
        queue=queue,
        store=ModelStore(ws),
        config=lambda: config,
        log=get_logger("test"),
    )


def _assert_untouched(ws, queue, before: bytes) -> None:
    assert len(queue.pending()) == 4
    assert ws.current_model.read_bytes() == before
    assert ModelStore(ws).versions() == [1]
    assert list(ws.state.glob("candidate-*")) == []


@pytest.mark.parametrize(
    ("fault", "timeout", "expected"),
    [
        ("crash", 60, "killed by signal 9"),
        ("hang", 1.5, "no result within 1.5 s"),
        ("diverge", 60, "DivergedError"),
    ],
)
def test_child_failures_are_failed_runs(setup, monkeypatch, fault, timeout, expected) -> None:
    ws, queue = setup
    before = ws.current_model.read_bytes()
    monkeypatch.setenv(FAULT_ENV, fault)
    outcome = _runner(ws, queue, timeout_seconds=timeout).run("test")
    assert outcome == "failed"
    run = queue.last_run()
    assert run.outcome == "failed"
    assert expected in run.reason
    _assert_untouched(ws, queue, before)


def test_abort_abandons_the_run(setup, monkeypatch) -> None:
    ws, queue = setup
    before = ws.current_model.read_bytes()
    monkeypatch.setenv(FAULT_ENV, "hang")
    runner = _runner(ws, queue)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(runner.run("test")))
    thread.start()
    time.sleep(1.0)
    runner.abort()
    thread.join(30)
    assert result == ["abandoned"]
    assert queue.last_run().outcome == "abandoned"
    _assert_untouched(ws, queue, before)


def test_nothing_pending_starts_no_run(tmp_path: Path) -> None:
    model = tmp_path / "model.mlmodel"
    save_spec(build_updatable_spec(), model)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    with Queue(ws.db_path) as queue:
        assert _runner(ws, queue).run("test") == "nothing"
        assert queue.last_run() is None


def test_stale_candidates_are_removed(tmp_path: Path) -> None:
    (tmp_path / "candidate-3.mlmodel").write_bytes(b"half")
    (tmp_path / "candidate-3.stderr").write_bytes(b"")
    (tmp_path / "mlupdated.db").write_bytes(b"")
    removed = remove_stale_candidates(tmp_path)
    assert sorted(p.name for p in removed) == ["candidate-3.mlmodel", "candidate-3.stderr"]
    assert [p.name for p in tmp_path.iterdir()] == ["mlupdated.db"]


def test_a_status_file_half_written_by_a_killed_daemon_is_removed(tmp_path: Path) -> None:
    # status.json is rewritten every few seconds: a SIGKILL can land inside that write.
    (tmp_path / "status.json").write_bytes(b"{}")
    (tmp_path / f"{TEMP_PREFIX}75td").write_bytes(b'{"pid": 1')
    removed = remove_stale_candidates(tmp_path)
    assert [p.name for p in removed] == [f"{TEMP_PREFIX}75td"]
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_half_written_feature_cache_entries_are_removed(tmp_path: Path) -> None:
    # A training child killed mid-write leaves its temporary in the feature cache.
    entries = tmp_path / "cache" / "ab"
    entries.mkdir(parents=True)
    (entries / "abcd.npz").write_bytes(b"kept")
    (entries / f"{TEMP_PREFIX}x1y2").write_bytes(b"half")
    (tmp_path / "cache" / f"{TEMP_PREFIX}z3").write_bytes(b"half")
    removed = remove_stale_candidates(tmp_path)
    assert sorted(p.name for p in removed) == [f"{TEMP_PREFIX}x1y2", f"{TEMP_PREFIX}z3"]
    assert [p.name for p in entries.iterdir()] == ["abcd.npz"]


def test_promoted_runs_mark_trained_and_apply_retention(setup) -> None:
    ws, queue = setup
    assert _runner(ws, queue).run("test") == "promoted"
    assert queue.pending() == []
    assert {c.version for c in queue.all_trained()} == {2}
    entry = ModelStore(ws).manifest()[-1]
    assert (entry.version, entry.promoted, entry.corrections["count"]) == (2, True, 4)
    assert entry.gate["passed"] is True
    _add(ws, queue, "more1.png", "Cat", 50)
    _add(ws, queue, "more2.png", "Dog", 51)
    # A tolerance of 1 lets any candidate through: this is about retention.
    runner = _runner(ws, queue, gate={"tolerance": 1.0}, store={"keep_versions": 1})
    assert runner.run("test") == "promoted"
    # The second run was measured on the four corrections the first one trained.
    assert queue.last_run().metrics["gate"]["current"]["count"] == 4
    assert ModelStore(ws).versions() == [1, 3]
    assert ModelStore(ws).current_version() == 3


def test_a_worse_candidate_is_kept_but_not_promoted(setup) -> None:
    ws, queue = setup
    strong = {"epochs": 10, "learning_rate": 0.5}
    assert _runner(ws, queue, **strong).run("test") == "promoted"
    # The same pictures (one pixel off, so new content) under the opposite labels.
    for c in queue.all_trained():
        source = ws.root / c.path
        pixels = np.asarray(Image.open(source)).copy()
        pixels[0, 0, 0] ^= 1
        flipped = "Cat" if c.label == "Dog" else "Dog"
        _queue_pixels(ws, queue, pixels, f"flipped-{source.name}", flipped)
    before = ws.current_model.read_bytes()
    outcome = _runner(ws, queue, **strong).run("test")
    assert outcome == "rejected", queue.last_run().metrics["gate"]
    run = queue.last_run()
    assert "below the current model" in run.reason
    gate = run.metrics["gate"]
    assert gate["candidate"]["accuracy"] < gate["current"]["accuracy"]
    entry = ModelStore(ws).manifest()[-1]
    assert (entry.version, entry.promoted, entry.gate["passed"]) == (3, False, False)
    assert ws.current_model.read_bytes() == before
    assert len(queue.pending()) == 4


def test_replay_policy_trains_on_a_sample_of_earlier_corrections(setup) -> None:
    ws, queue = setup
    assert _runner(ws, queue).run("test") == "promoted"
    _add(ws, queue, "new1.png", "Cat", 60)
    _add(ws, queue, "new2.png", "Dog", 61)
    runner = _runner(ws, queue, policy="replay", replay_sample=3, gate={"tolerance": 1.0})
    assert runner.run("test") == "promoted"
    run = queue.last_run()
    assert run.policy == "replay"
    assert run.metrics["replayed"] == 3
    assert run.metrics["examples_used"] == 5
    # The gate measured on the one earlier correction that was not replayed; replayed
    # ones keep the version that first learned them.
    assert run.metrics["gate"]["current"]["count"] == 1
    entry = ModelStore(ws).manifest()[-1]
    assert entry.corrections["count"] == 2
    assert sorted(c.version for c in queue.all_trained()) == [2, 2, 2, 2, 3, 3]


def _children_of_this_process() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            text = (task / "children").read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        pids.update(int(pid) for pid in text.split())
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # some other child that ended meanwhile
        return b""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


def test_the_child_runs_blas_single_threaded_unless_the_user_chose(setup, monkeypatch) -> None:
    ws, queue = setup
    monkeypatch.setenv(FAULT_ENV, "hang")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    runner = _runner(ws, queue)
    before = _children_of_this_process()
    thread = threading.Thread(target=runner.run, args=("test",))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        new: list[int] = []
        # Wait for the exec: before it, a forked child still shows our environment.
        while not new and time.monotonic() < deadline:
            time.sleep(0.05)
            new = [
                pid
                for pid in _children_of_this_process() - before
                if b"worker_child" in _cmdline(pid)
            ]
        (pid,) = new
        env = _environ(pid)
    finally:
        runner.abort()
        thread.join(30)
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == "1"
    assert env["OMP_NUM_THREADS"] == "3"  # the user's own choice is kept
    assert env[FAULT_ENV] == "hang"  # the rest of the environment is passed on


def test_photos_over_the_engine_limit_are_decoded_with_the_intake_limit(tmp_path) -> None:
    from mlupdated.service.update.worker_child import training_examples

    spec = build_updatable_spec()
    small, big, broken = tmp_path / "small.png", tmp_path / "big.png", tmp_path / "bad.png"
    Image.fromarray(_colour("Cat", np.random.default_rng(1))).save(small)  # 8×8: 64 px
    noise = np.random.default_rng(3).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(noise).save(big)  # 256 px
    data = big.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a header that says 16×16, half the pixels
    pairs = [(small, "Cat"), (big, "Dog"), (broken, "Dog")]
    # Intake's limit no higher than the engine's: every example stays a file.
    kept, unreadable = training_examples(
        spec, pairs, resize="scaleFill", max_pixels=100, engine_limit=100
    )
    assert [e.source for e in kept] == [small, big, broken] and unreadable == []
    # Intake's limit above the engine's: the photos over it come as pixels, decoded
    # with intake's limit; one that cannot be decoded is reported by its path.
    kept, unreadable = training_examples(
        spec, pairs, resize="scaleFill", max_pixels=1000, engine_limit=100
    )
    assert kept[0].source == small
    assert isinstance(kept[1].source, np.ndarray) and kept[1].label == "Dog"
    assert len(kept) == 2
    assert [path for path, _ in unreadable] == [str(broken)]


def test_gate_evaluation_uses_the_intake_pixel_limit(tmp_path) -> None:
    from mlupdated.service.update.gate import evaluate

    model = tmp_path / "model.mlmodel"
    save_spec(build_updatable_spec(), model)
    photo = tmp_path / "p.png"
    Image.fromarray(_colour("Cat", np.random.default_rng(2))).save(photo)
    assert evaluate(model, [(str(photo), "Cat")]).count == 1
    refused = evaluate(model, [(str(photo), "Cat")], max_pixels=10)
    assert (refused.count, refused.failures) == (0, 1)
