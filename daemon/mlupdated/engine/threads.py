"""How a session of onnxruntime uses the CPUs: how many threads, and whether idle ones
spin-wait for the next operator; for a one-shot run, chosen from what the machine is
doing at that moment (the kernel's run queue), for the daemon and the trainer the same
every time.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

# The kernel's run queue (see busy_cpus_now): read 9 times over about 10 ms, so that a
# moment's wake-up elsewhere does not decide, a program busy half that time does.
RUN_QUEUE_FILE = Path("/proc/loadavg")
OWN_TASKS = Path("/proc/self/task")
RUN_QUEUE_READINGS = 9
RUN_QUEUE_GAP_S = 0.001


def busy_cpus_now() -> float | None:
    """How many threads of other programs are running or ready to run right now: the
    median of several readings, a millisecond apart, of the kernel's run queue (the fourth
    field of Linux's ``/proc/loadavg``) less this process's own running threads (its
    reader, and any worker still spinning after earlier work, such as torch's). ``None``
    where there is no such file."""
    readings = []
    for index in range(RUN_QUEUE_READINGS):
        if index:
            time.sleep(RUN_QUEUE_GAP_S)
        try:
            text = RUN_QUEUE_FILE.read_text()
            runnable = int(text.split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        readings.append(max(0, runnable - _own_running_threads()))
    return statistics.median(readings)


def _own_running_threads() -> int:
    """This process's threads in the running state (at least the one asking)."""
    running = 0
    try:
        tasks = list(OWN_TASKS.iterdir())
    except OSError:
        return 1
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread has ended
            continue
        # "pid (name) state ...": the name may hold spaces or parentheses.
        if stat[stat.rindex(")") + 2 : stat.rindex(")") + 3] == "R":
            running += 1
    return max(1, running)


@dataclass(frozen=True)
class Threads:
    """How a session uses the CPUs: ``count`` worker threads (0: onnxruntime's own
    choice, one per physical core) and whether idle ones spin-wait for the next
    operator during a run (see ``runtime.Session``)."""

    count: int = 0
    spinning: bool = False


# The daemon's and the trainer's choice, and a library user's unless they ask.
DEFAULT_THREADS = Threads()


def one_shot_threads() -> Threads:
    """The threads for a one-shot run (``predict``, ``features``), from what the machine
    is doing at this moment (:func:`busy_cpus_now`; the 1-minute load average where
    there is no run queue to read, and onnxruntime's defaults where there is neither).

    - Fewer than half the CPUs busy with other work: the machine is ours. onnxruntime's
      thread count, and idle threads spin during a run, which hands work from one
      operator to the next sooner (ResNet-18 at batch 1 alone: 52 → 102 img/s).
    - Otherwise only as many threads as there are idle CPUs (at least one), not
      spinning: a thread that waits for a core the other program holds stalls every
      operator (on 2 CPUs with one busy, 1 thread ran the default model 1.35-1.4×
      faster than 2), and spinning threads take CPU from the ones doing the work.

    The run queue is read now rather than the load average, which still remembers work
    that ended a minute ago (on a 2-core machine it kept spinning off for a whole
    benchmark run). A long-lived process (the daemon, the trainer) keeps the default
    ``Threads()``: onnxruntime's count, no spinning.
    """
    cpus = os.cpu_count() or 1
    busy = busy_cpus_now()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            return DEFAULT_THREADS
    if busy < cpus / 2:
        return Threads(spinning=True)
    return Threads(count=max(1, int(cpus - busy)))
