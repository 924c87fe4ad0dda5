"""The durable queue: corrections, update runs, errors and predictions in SQLite (WAL).

``db`` opens the database and holds the schema; ``records`` keeps runs, errors,
predictions and the files seen; ``corrections`` the drops themselves (``correction``:
the records it hands out; ``drops``: what a drop or a removal changes); ``history``
what they went through (gate rejections, rollbacks, conflicts); ``queue`` is what the
daemon holds (``Queue``).
"""

from __future__ import annotations

from .queue import (
    DEFAULT_BUSY_TIMEOUT,
    PENDING,
    REJECTED,
    RETRACTED,
    RUN_OUTCOMES,
    SCHEMA_VERSION,
    STATES,
    TRAINED,
    Correction,
    CorrectionChange,
    Queue,
)
from .records import Run

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "PENDING",
    "REJECTED",
    "RETRACTED",
    "RUN_OUTCOMES",
    "SCHEMA_VERSION",
    "STATES",
    "TRAINED",
    "Correction",
    "CorrectionChange",
    "Queue",
    "Run",
]
