"""The threads a one-shot run takes: from the kernel's run queue read at that moment,
less this process's own threads; the load average only where there is no run queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlupdated.engine import threads as engine_threads

OURS = engine_threads.Threads(spinning=True)


@pytest.mark.parametrize(
    ("runnable", "cpus", "threads"),
    [
        ("1/90", 2, OURS),
        ("2/90", 2, engine_threads.Threads(count=1)),
        ("4/90", 2, engine_threads.Threads(count=1)),
        ("3/300", 8, OURS),
        ("5/300", 8, engine_threads.Threads(count=4)),
        ("8/300", 8, engine_threads.Threads(count=1)),
    ],
)
def test_one_shot_runs_take_the_cores_idle_now(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    runnable: str,
    cpus: int,
    threads: engine_threads.Threads,
) -> None:
    queue = tmp_path / "loadavg"
    queue.write_text(f"0.10 0.10 0.10 {runnable} 4242\n")  # the run queue counts the reader
    monkeypatch.setattr(engine_threads, "RUN_QUEUE_FILE", queue)
    # A load average that says the opposite: the run queue read now decides.
    past = 0.0 if threads != OURS else float(cpus)
    monkeypatch.setattr(engine_threads.os, "getloadavg", lambda: (past, past, past))
    monkeypatch.setattr(engine_threads.os, "cpu_count", lambda: cpus)
    assert engine_threads.one_shot_threads() == threads


@pytest.mark.parametrize(
    ("load", "cpus", "threads"),
    [
        (0.2, 2, OURS),
        (0.99, 2, OURS),
        (1.0, 2, engine_threads.Threads(count=1)),
        (3.5, 8, OURS),
        (6.5, 8, engine_threads.Threads(count=1)),
    ],
)
def test_without_a_run_queue_the_load_average_decides(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    load: float,
    cpus: int,
    threads: engine_threads.Threads,
) -> None:
    monkeypatch.setattr(engine_threads, "RUN_QUEUE_FILE", tmp_path / "no-such-file")
    monkeypatch.setattr(engine_threads.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(engine_threads.os, "cpu_count", lambda: cpus)
    assert engine_threads.one_shot_threads() == threads


def test_busy_programs_turn_spinning_off() -> None:
    """On the real machine: with one busy program per CPU, a one-shot run takes one
    thread and does not spin."""
    assert engine_threads.RUN_QUEUE_FILE.exists(), "this check reads Linux's run queue"
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.5)  # let them start and stay runnable
        assert engine_threads.busy_cpus_now() >= len(hogs)
        assert engine_threads.one_shot_threads() == engine_threads.Threads(count=1)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_no_run_queue_and_no_load_average_means_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(engine_threads, "RUN_QUEUE_FILE", tmp_path / "no-such-file")
    monkeypatch.setattr(engine_threads.os, "getloadavg", unavailable)
    assert engine_threads.one_shot_threads() == engine_threads.DEFAULT_THREADS
