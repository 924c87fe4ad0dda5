"""The durable queue: corrections, runs, predictions and seen files in SQLite (WAL).

One database per workspace (``state/mlupdated.db``). :class:`Queue` is what the rest
of the daemon holds: it owns the :class:`~.db.Database` (connection, schema,
transactions) and the three views of it, :class:`~.corrections.Corrections`,
:class:`~.records.Records` and :class:`~.history.History`, and passes each call to
the one that knows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..update.runs import RUN_OUTCOMES, Outcome
from .corrections import Correction, CorrectionChange, Corrections
from .db import (
    DEFAULT_BUSY_TIMEOUT,
    PENDING,
    REJECTED,
    RETRACTED,
    SCHEMA_VERSION,
    STATES,
    TRAINED,
    Database,
)
from .history import Conflict, History
from .records import Records, Run

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "PENDING",
    "REJECTED",
    "RETRACTED",
    "RUN_OUTCOMES",
    "SCHEMA_VERSION",
    "STATES",
    "TRAINED",
    "Conflict",
    "Correction",
    "CorrectionChange",
    "Queue",
]


class Queue:
    """The workspace database (``state/mlupdated.db``). Thread-safe.

    ``Queue(db_path, *, busy_timeout=10.0)``; ``close()``.
    """

    def __init__(self, db_path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.db = Database(db_path, busy_timeout=busy_timeout)
        self.corrections = Corrections(self.db)
        self.records = Records(self.db)
        self.history = History(self.db)

    @property
    def db_path(self) -> Path:
        """Where the database lives."""
        return self.db.db_path

    def journal_mode(self) -> str:
        """The SQLite journal mode in use (``wal``)."""
        return self.db.journal_mode()

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        self.db.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- corrections (see ``corrections.py``) -----------------------------------------

    def upsert_correction(
        self,
        *,
        path: str,
        sha256: str,
        label: str,
        size: int,
        mtime: float,
    ) -> CorrectionChange:
        """Record that ``path`` (relative to the workspace) holds ``sha256`` under ``label``."""
        return self.corrections.upsert_correction(
            path=path, sha256=sha256, label=label, size=size, mtime=mtime
        )

    def retract_path(self, path: str) -> bool:
        """``path`` is gone: forget it; True if that retracted a pending correction."""
        return self.corrections.retract_path(path)

    def correction_paths(self, prefix: str | None = None) -> dict[str, str]:
        """Every path that holds a correction (→ its label), optionally under ``prefix``."""
        return self.corrections.correction_paths(prefix)

    def learned_only_at(self, path: str) -> Correction | None:
        """The trained correction whose one remaining file is ``path``, if any."""
        return self.history.learned_only_at(path)

    def conflicts(self) -> list[Conflict]:
        """Images held under more than one label at once (the same photo in two folders)."""
        return self.history.conflicts()

    def holds_path(self, path: str) -> bool:
        """True when ``path`` is recorded as holding a correction."""
        return self.corrections.holds_path(path)

    def correction(self, correction_id: int) -> Correction | None:
        """One correction by id."""
        return self.corrections.correction(correction_id)

    def correction_by_sha(self, sha256: str) -> Correction | None:
        """The correction holding this content, if any."""
        return self.corrections.correction_by_sha(sha256)

    def pending(self) -> list[Correction]:
        """Pending corrections, oldest first."""
        return self.corrections.pending()

    def pending_counts(self) -> dict[str, int]:
        """Pending corrections per label."""
        return self.corrections.pending_counts()

    def counts(self) -> dict[str, int]:
        """Corrections per state (every state present, zero included)."""
        return self.corrections.counts()

    def oldest_pending_time(self) -> float | None:
        """When the longest-waiting pending correction was queued (epoch seconds)."""
        return self.corrections.oldest_pending_time()

    def last_drop_time(self) -> float | None:
        """When the last correction was added or changed by a drop (epoch seconds)."""
        return self.corrections.last_drop_time()

    def mark_trained(self, ids: Iterable[int], version: int) -> int:
        """Mark corrections trained into ``version``; returns how many were marked."""
        return self.corrections.mark_trained(ids, version)

    def mark_rejected(self, ids: Iterable[int], reason: str) -> int:
        """Mark corrections that can never be used (unreadable image …) with the reason."""
        return self.corrections.mark_rejected(ids, reason)

    def gate_rejections(self, ids: Iterable[int]) -> dict[int, int]:
        """Per correction (as it is now), how many runs the gate rejected with it."""
        return self.history.gate_rejections(ids)

    def requeue_trained(self, keep: Callable[[int], bool]) -> list[Correction]:
        """Trained corrections whose version fails ``keep`` go back to pending."""
        return self.history.requeue_trained(keep)

    def trained_sample(self, n: int, *, seed: int | None) -> list[Correction]:
        """Up to ``n`` trained corrections, a seeded random sample (for replay)."""
        return self.corrections.trained_sample(n, seed=seed)

    def all_trained(self) -> list[Correction]:
        """Every trained correction, oldest first."""
        return self.corrections.all_trained()

    # --- runs, errors, predictions, files seen (see ``records.py``) ------------------

    def start_run(self, *, correction_ids: Iterable[int], policy: str) -> int:
        """Record that an update run starts on these corrections; returns the run id."""
        return self.records.start_run(correction_ids=correction_ids, policy=policy)

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: Outcome | str,
        version: int | None,
        loss: float | None,
        metrics: dict[str, Any],
        reason: str | None,
        duration: float,
    ) -> None:
        """Record how a run ended."""
        return self.records.finish_run(
            run_id,
            outcome=outcome,
            version=version,
            loss=loss,
            metrics=metrics,
            reason=reason,
            duration=duration,
        )

    def last_run(self) -> Run | None:
        """The most recent run (``outcome`` None while it is still running)."""
        return self.records.last_run()

    def runs(self, limit: int = 20) -> list[Run]:
        """The most recent runs, newest first."""
        return self.records.runs(limit)

    def interrupted_runs(self) -> list[Run]:
        """Runs that started and never finished (the daemon was killed)."""
        return self.records.interrupted_runs()

    def record_error(self, kind: str, path: str | None, reason: str) -> None:
        """Remember a problem for ``status`` (a rolling window of the latest ones)."""
        return self.records.record_error(kind, path, reason)

    def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest recorded problems, newest first."""
        return self.records.recent_errors(limit)

    def record_prediction(
        self,
        *,
        path: str,
        sha256: str,
        label: str,
        probabilities: dict[str, float],
        version: int,
    ) -> None:
        """Store what model ``version`` said about this content (first answer kept)."""
        return self.records.record_prediction(
            path=path, sha256=sha256, label=label, probabilities=probabilities, version=version
        )

    def prediction_for(self, sha256: str, version: int | None = None) -> dict[str, Any] | None:
        """The prediction for this content by ``version`` (by any version, newest, if None)."""
        return self.records.prediction_for(sha256, version)

    def seen_file(self, path: str) -> tuple[int, float, str] | None:
        """(size, mtime, sha256) recorded for ``path`` when it was last taken, if any."""
        return self.records.seen_file(path)

    def mark_seen(self, path: str, size: int, mtime: float, sha256: str) -> None:
        """Remember that ``path`` was taken with this size, mtime and content."""
        return self.records.mark_seen(path, size, mtime, sha256)

    def seen_files(self) -> dict[str, tuple[int, float, str]]:
        """Every remembered path → (size, mtime, sha256), in one query (for rescans)."""
        return self.records.seen_files()

    def forget_seen(self, path: str) -> None:
        """Forget ``path`` (it was removed)."""
        return self.records.forget_seen(path)

    def seen_paths(self, prefix: str | None = None) -> list[str]:
        """Every remembered path, optionally under ``prefix``."""
        return self.records.seen_paths(prefix)
