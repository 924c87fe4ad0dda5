"""The trigger rules and the scheduler's decisions, on a fake monotonic clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mlupdated.errors import ConfigError
from mlupdated.service.scheduler import TriggerRules, UpdateScheduler, due_reason, parse_cron


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    info = warning = error = debug = exception = _add


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RULES = TriggerRules(
    min_batch=3,
    quiet_seconds=10,
    max_wait_seconds=100,
    retry_backoff_seconds=5,
    max_backoff_seconds=12,
)


def _make(outcomes: list[str], pending: list[int]):
    clock = _Clock()
    runs: list[str] = []

    def run_update(reason: str) -> str:
        runs.append(reason)
        return outcomes.pop(0) if outcomes else "promoted"

    sched = UpdateScheduler(
        RULES, pending_count=lambda: pending[0], run_update=run_update, log=_Log(), clock=clock
    )
    return sched, clock, runs


def test_due_reason_rules() -> None:
    assert due_reason(RULES, pending=2, since_last_drop=50, since_oldest=500) is None
    assert due_reason(RULES, pending=3, since_last_drop=5, since_oldest=50) is None
    assert due_reason(RULES, pending=3, since_last_drop=10, since_oldest=50) == "quiet"
    assert due_reason(RULES, pending=3, since_last_drop=1, since_oldest=100) == "max_wait"
    assert due_reason(RULES, pending=3, since_last_drop=None, since_oldest=None) == "quiet"


def test_waits_for_batch_then_quiet() -> None:
    pending = [0]
    sched, clock, runs = _make([], pending)
    for _ in range(3):
        sched.note_drop()
        pending[0] += 1
        clock.now += 1
    assert sched.tick() is None  # only 1 s since the last drop
    assert sched.next_trigger()["due_in_seconds"] == pytest.approx(9.0)
    clock.now += 9
    assert sched.tick() == "quiet"
    assert runs == ["quiet"]


def test_steady_stream_is_capped_by_max_wait() -> None:
    pending = [5]
    sched, clock, runs = _make([], pending)
    for _ in range(101):
        sched.note_drop()
        clock.now += 1
        sched.tick()
    assert runs == ["max_wait"]


def test_retracted_batch_does_not_age_the_next_one() -> None:
    pending = [0]
    sched, clock, runs = _make([], pending)
    sched.note_drop()
    pending[0] = 1
    sched.tick()
    pending[0] = 0  # the owner deleted it again
    sched.tick()
    clock.now += 500  # far past max_wait
    for _ in range(3):  # a new batch, dropped one second apart
        sched.note_drop()
        pending[0] += 1
        clock.now += 1
        assert sched.tick() is None  # neither quiet nor max_wait yet
    clock.now += 9
    assert sched.tick() == "quiet"
    assert runs == ["quiet"]


def test_backoff_doubles_up_to_the_cap_and_resets_on_success() -> None:
    pending = [3]
    sched, clock, runs = _make(["failed", "rejected", "failed", "promoted"], pending)
    assert sched.tick() == "quiet"
    waits = []
    for _ in range(3):
        state = sched.next_trigger()
        assert state["state"] == "backing_off"
        waits.append(state["due_in_seconds"])
        assert sched.tick() is None
        clock.now += state["due_in_seconds"]
        assert sched.tick() == "quiet"
    assert waits == [5, 10, 12]
    # After the success the next failure starts from the base back-off again.
    assert sched.next_trigger()["state"] != "backing_off"


def test_update_now_overrides_rules_pause_and_backoff_but_needs_pending() -> None:
    pending = [0]
    sched, clock, runs = _make(["failed"], pending)
    sched.pause()
    sched.request_update()
    assert sched.tick() is None  # nothing pending: the request is dropped, not kept
    assert sched.tick() is None
    pending[0] = 1
    sched.request_update()
    assert sched.tick() == "update-now"
    sched.request_update()
    assert sched.tick() == "update-now"  # even during the back-off of the failed run
    assert runs == ["update-now", "update-now"]


def test_pause_and_resume() -> None:
    pending = [5]
    sched, clock, runs = _make([], pending)
    sched.pause()
    assert sched.tick() is None
    assert sched.next_trigger()["state"] == "paused"
    sched.resume()
    assert sched.tick() == "quiet"


def test_clock_jump_forward_gives_one_catch_up_run() -> None:
    pending = [5]
    sched, clock, runs = _make([], pending)
    # Started with pending work whose wall-clock age is absurd (clock moved years on).
    sched.prime(pending=5, oldest_age=10 * 365 * 86400)
    assert sched.tick() == "max_wait"
    pending[0] = 0
    for _ in range(10):
        clock.now += 1
        assert sched.tick() is None
    assert runs == ["max_wait"]


def test_negative_age_counts_as_new() -> None:
    pending = [5]
    sched, clock, runs = _make([], pending)
    sched.prime(pending=5, oldest_age=-86400)  # clock moved a day back
    assert sched.tick() is None
    clock.now += RULES.quiet_seconds
    assert sched.tick() == "quiet"


def test_one_run_at_a_time_across_threads() -> None:
    pending = [5]
    started = threading.Event()
    release = threading.Event()
    runs: list[str] = []

    def slow(reason: str) -> str:
        runs.append(reason)
        started.set()
        release.wait(10)
        return "promoted"

    sched = UpdateScheduler(RULES, pending_count=lambda: pending[0], run_update=slow, log=_Log())
    worker = threading.Thread(target=sched.tick)
    worker.start()
    assert started.wait(10)
    assert sched.running
    sched.request_update()
    assert sched.tick() is None
    release.set()
    worker.join(10)
    assert runs == ["quiet"]
    assert not sched.running


def test_crashing_job_counts_as_failed() -> None:
    def boom(reason: str) -> str:
        raise RuntimeError("bug")

    log = _Log()
    sched = UpdateScheduler(RULES, pending_count=lambda: 5, run_update=boom, log=log)
    assert sched.tick() == "quiet"
    assert not sched.running
    assert sched.next_trigger()["state"] == "backing_off"


def test_bad_cron_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cron("every tuesday")
    assert info.value.key == "update.cron"
    parse_cron("0 3 * * *")


def test_background_scheduler_runs_the_job() -> None:
    done = threading.Event()

    def run_update(reason: str) -> str:
        done.set()
        return "promoted"

    rules = TriggerRules(min_batch=1, quiet_seconds=0.2, cron="* * * * *")
    sched = UpdateScheduler(rules, pending_count=lambda: 1, run_update=run_update, log=_Log())
    sched.note_drop()
    sched.start()
    try:
        assert done.wait(10)
        assert sched.next_trigger().get("cron_next") is not None or sched.running
    finally:
        sched.shutdown()


def test_cron_respects_pause_and_backoff_but_not_min_batch() -> None:
    pending = [1]  # below min_batch
    sched, clock, runs = _make(["failed"], pending)
    sched.request_update(reason="cron")
    assert sched.tick() == "cron"
    sched.request_update(reason="cron")
    assert sched.tick() is None  # in the back-off of the failed run
    clock.now += 100
    sched.pause()
    sched.request_update(reason="cron")
    assert sched.tick() is None
    sched.resume()
    assert sched.tick() is None  # the skipped firing is not kept for later
    assert runs == ["cron"]


def test_a_batch_given_up_on_leaves_no_back_off_for_the_next() -> None:
    clock, runs, pending = _Clock(), [], [3]
    rules = TriggerRules(min_batch=3, quiet_seconds=1, retry_backoff_seconds=50)

    def run_update(reason: str) -> str:
        runs.append(reason)
        return "rejected"

    sched = UpdateScheduler(
        rules, pending_count=lambda: pending[0], run_update=run_update, log=_Log(), clock=clock
    )
    assert sched.tick() == "quiet"
    assert sched.next_trigger()["state"] == "backing_off"
    pending[0] = 0  # its corrections ended as rejected
    assert sched.tick() is None
    pending[0] = 3  # new ones, a fresh batch: tried by the usual rules, not in 50 s
    sched.note_drop()
    clock.now += rules.quiet_seconds
    assert sched.tick() == "quiet"
    assert runs == ["quiet", "quiet"]
