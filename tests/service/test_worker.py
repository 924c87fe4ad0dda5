"""The update worker's failure paths: the child crashes, hangs, diverges, or is abandoned.

Each runs the real child process (``python -m mlupdated.service.worker``) through the
documented test hooks, on a real workspace, queue and store; the daemon side must
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
from mlupdated.logs import get_logger
from mlupdated.service.config import config_from_dict
from mlupdated.service.queue import Queue
from mlupdated.service.store import ModelStore
from mlupdated.service.worker import FAULT_ENV, UpdateRunner, remove_stale_candidates
from mlupdated.service.workspace import init_workspace
from PIL import Image

from tests.helpers.updatable_specs import build_updatable_spec


@pytest.fixture
def setup(tmp_path: Path):
    model = tmp_path / "model.mlmodel"
    save_spec(build_updatable_spec(), model)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    queue = Queue(ws.db_path)
    rng = np.random.default_rng(0)
    for i in range(4):
        label = "Cat" if i % 2 else "Dog"
        path = ws.corrections / label / f"img{i}.png"
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        data = path.read_bytes()
        queue.upsert_correction(
            path=path.relative_to(ws.root).as_posix(),
            sha256=hashlib.sha256(data).hexdigest(),
            label=label,
            size=len(data),
            mtime=path.stat().st_mtime,
        )
    yield ws, queue
    queue.close()


def _runner(ws, queue, **update) -> UpdateRunner:
    config = config_from_dict({"update": {"timeout_seconds": 60, **update}})
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
    assert run["outcome"] == "failed"
    assert expected in run["reason"]
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
    assert queue.last_run()["outcome"] == "abandoned"
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
