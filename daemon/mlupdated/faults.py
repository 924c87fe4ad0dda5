"""The fault seam: the only place where the daemon's own tests reach into it.

A daemon under test is a real process, so a test turns a fault on through the
environment; with none of these variables set, every function here does nothing.

- ``MLUPDATED_TEST_WORKER_FAULT`` = ``crash`` (the training child kills itself with
  SIGKILL, as the OOM killer would), ``hang`` (it sleeps forever), ``nan`` (it
  trains, then writes NaN into the candidate's updatable weights) or ``diverge``
  (it reports ``DivergedError``).
- ``MLUPDATED_TEST_SWAP_DELAY`` = seconds the daemon sleeps between storing a new
  version and making it current, so a test can kill -9 inside the swap.
- ``MLUPDATED_TEST_AFTER_SWAP_DELAY`` = seconds it sleeps after making it current and
  before marking the corrections trained (a kill there: the restart must notice).

It also counts events a test wants to see happen (``count``/``counted``: graph
compilations, to check that the cache is used); counting changes nothing.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

WORKER_FAULT_ENV = "MLUPDATED_TEST_WORKER_FAULT"
SWAP_DELAY_ENV = "MLUPDATED_TEST_SWAP_DELAY"
AFTER_SWAP_DELAY_ENV = "MLUPDATED_TEST_AFTER_SWAP_DELAY"

# Where the daemon may be held, and what it logs while it is.
_DELAYS = {
    "swap": (SWAP_DELAY_ENV, "test hook: delaying the swap"),
    "after_swap": (AFTER_SWAP_DELAY_ENV, "test hook: delaying after the swap"),
}

_counts: Counter[str] = Counter()


def worker_fault() -> str:
    """The fault the training child is asked to show ("" for none)."""
    return os.environ.get(WORKER_FAULT_ENV, "")


def delay(point: str, *, log: Any, **fields: Any) -> None:
    """Sleep at ``point`` (``swap`` or ``after_swap``) if a test asked for it, saying so."""
    variable, message = _DELAYS[point]
    seconds = os.environ.get(variable)
    if seconds:
        log.warning(message, **fields, seconds=float(seconds))
        time.sleep(float(seconds))


def count(event: str) -> None:
    """Count one ``event`` (e.g. ``compile``)."""
    _counts[event] += 1


def counted(event: str) -> int:
    """How many times ``event`` happened in this process."""
    return _counts[event]
