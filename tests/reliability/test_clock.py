"""The clock jumping: a day back, years forward.

The daemon's triggers run on the monotonic clock; the wall clock only enters through
the times stored in the database (how old the oldest pending correction is at a
start-up). Two levels, because moving the machine's clock needs more than a test may
do (a time-faking preload library is not part of the test environment):

- the scheduler driven tick by tick on a fake monotonic clock while ``time.time``
  jumps: its decisions do not move;
- the real daemon started on a database whose stored times say the clock went a day
  back (times in the future) or ten years forward (times in the distant past): one
  update, not zero and not a storm.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from mlupdated.service.scheduler import TriggerRules, UpdateScheduler

from tests.daemon.conftest import make_photo
from tests.reliability.harness import corrections_by_sha, make_workspace, write_figures

pytestmark = pytest.mark.slow

DAY = 86400.0
YEARS_10 = 10 * 365.25 * DAY
RULES = TriggerRules(min_batch=3, quiet_seconds=10, max_wait_seconds=100)


class _Log:
    def _add(self, event, **kw):
        pass

    info = warning = error = debug = exception = _add


class _Monotonic:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _ticks(monkeypatch, wall_jump: float) -> list[tuple[int, str]]:
    """Drops and ticks on a fake monotonic clock; the wall clock jumps mid-way."""
    clock = _Monotonic()
    pending = [0]
    runs: list[tuple[int, str]] = []

    def run_update(reason: str) -> str:
        runs.append((int(clock.now), reason))
        pending[0] = 0
        return "promoted"

    sched = UpdateScheduler(
        RULES, pending_count=lambda: pending[0], run_update=run_update, log=_Log(), clock=clock
    )
    real = time.time
    for step in range(300):
        if step == 100:
            monkeypatch.setattr(time, "time", lambda: real() + wall_jump)
        if step % 40 < 4:
            sched.note_drop()
            pending[0] += 1
        sched.tick()
        clock.now += 1
    monkeypatch.setattr(time, "time", real)
    return runs


@pytest.mark.parametrize("jump", [-DAY, YEARS_10])
def test_scheduler_decisions_ignore_wall_clock_jumps(monkeypatch, jump) -> None:
    steady = _ticks(monkeypatch, 0.0)
    assert steady, "the drops should have caused updates"
    assert _ticks(monkeypatch, jump) == steady


@pytest.mark.parametrize("age", [-DAY, YEARS_10])
def test_prime_after_a_clock_jump_runs_once(age) -> None:
    clock = _Monotonic()
    pending = [5]
    runs: list[str] = []

    def run_update(reason: str) -> str:
        runs.append(reason)
        pending[0] = 0
        return "promoted"

    sched = UpdateScheduler(
        RULES, pending_count=lambda: pending[0], run_update=run_update, log=_Log(), clock=clock
    )
    sched.prime(pending=5, oldest_age=age)
    for _ in range(int(RULES.max_wait_seconds) * 3):
        sched.tick()
        clock.now += 1
    assert len(runs) == 1
    assert sched.next_trigger()["state"] != "backing_off"


def _shift_times(db, seconds: float) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "UPDATE corrections SET first_seen = first_seen + ?, updated = updated + ?, "
                "queued = queued + ?",
                (seconds, seconds, seconds),
            )
    finally:
        conn.close()


@pytest.mark.parametrize(
    "shift,name", [(DAY, "clock moved a day back"), (-YEARS_10, "clock moved ten years on")]
)
def test_daemon_after_a_clock_jump_updates_once(tmp_path, small_model, daemons, shift, name):
    ws = make_workspace(tmp_path / "ws", small_model)
    for i in range(3):
        make_photo(ws.corrections / "Cat" / f"c{i}.png", "red", i)
    # A daemon whose batch is too large to trigger queues them, then stops.
    ws.write_config(update={"min_batch": 1000}, gate={"enabled": False})
    queuer = daemons(ws).start()
    for i in range(3):
        queuer.wait_for(event="correction queued", path=f"corrections/Cat/c{i}.png")
    assert queuer.stop() == 0
    _shift_times(ws.root / "state" / "mlupdated.db", shift)

    ws.write_config(
        update={"min_batch": 3, "quiet_seconds": 1.0, "epochs": 3}, gate={"enabled": False}
    )
    daemon = daemons(ws).start()
    finished = daemon.wait_for(event="update finished", timeout=90)
    assert finished["outcome"] == "promoted", finished
    time.sleep(3)  # a storm would start a second update within the quiet period
    assert len(daemon.find(event="update started")) == 1
    assert {row[2] for row in corrections_by_sha(ws.root).values()} == {"trained"}
    assert daemon.stop() == 0
    write_figures(f"clock: {name}", {"updates": 1})
