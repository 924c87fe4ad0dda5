"""Records kept next to the corrections: update runs, errors, predictions, files seen."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from ..update.runs import RUN_OUTCOMES, Outcome
from .db import Database

# Errors are a rolling window, not a history: keep the table small.
_MAX_ERRORS = 1000


@dataclass(frozen=True)
class Run:
    """One row of the ``runs`` table: an update run, from its start to its end.

    ``outcome`` (an :class:`~..update.runs.Outcome` value), ``finished`` and the rest of
    how it ended are None while it is still running (or was killed)."""

    id: int
    started: float
    finished: float | None
    policy: str | None
    corrections: list[int]
    outcome: str | None
    version: int | None
    loss: float | None
    metrics: dict[str, Any]
    reason: str | None
    duration: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        """The run of one ``SELECT * FROM runs`` row."""
        return cls(
            id=row["id"],
            started=row["started"],
            finished=row["finished"],
            policy=row["policy"],
            corrections=json.loads(row["corrections"]),
            outcome=row["outcome"],
            version=row["version"],
            loss=row["loss"],
            metrics=json.loads(row["metrics"]) if row["metrics"] else {},
            reason=row["reason"],
            duration=row["duration"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``status --json`` shows (the table's columns, in order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Records:
    """Runs, errors, inbox predictions and the seen-files table of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- runs -------------------------------------------------------------------------

    def start_run(self, *, correction_ids: Iterable[int], policy: str) -> int:
        """Record that an update run starts on these corrections; returns the run id."""
        ids = list(correction_ids)
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs(started, policy, corrections) VALUES(?, ?, ?)",
                (time.time(), policy, json.dumps(ids)),
            )
            run_id = int(cur.lastrowid)
            for cid in ids:
                conn.execute(
                    "INSERT OR REPLACE INTO run_items(run_id, correction_id, revision) "
                    "SELECT ?, id, revision FROM corrections WHERE id = ?",
                    (run_id, cid),
                )
            return run_id

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
        if str(outcome) not in RUN_OUTCOMES:
            raise ValueError(f"unknown run outcome {str(outcome)!r}")
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE runs SET finished = ?, outcome = ?, version = ?, loss = ?, metrics = ?, "
                "reason = ?, duration = ? WHERE id = ?",
                (
                    time.time(),
                    Outcome(outcome).value,
                    version,
                    loss,
                    json.dumps(metrics, default=str),
                    reason,
                    duration,
                    run_id,
                ),
            )

    def last_run(self) -> Run | None:
        """The most recent run (``outcome`` None while it is still running)."""
        rows = self._db.read("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
        return Run.from_row(rows[0]) if rows else None

    def runs(self, limit: int = 20) -> list[Run]:
        """The most recent runs, newest first."""
        rows = self._db.read("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [Run.from_row(r) for r in rows]

    def interrupted_runs(self) -> list[Run]:
        """Runs that started and never finished (the daemon was killed)."""
        rows = self._db.read("SELECT * FROM runs WHERE finished IS NULL ORDER BY id")
        return [Run.from_row(r) for r in rows]

    # --- errors -----------------------------------------------------------------------

    def record_error(self, kind: str, path: str | None, reason: str) -> None:
        """Remember a problem for ``status`` (a rolling window of the latest ones)."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO errors(time, kind, path, reason) VALUES(?, ?, ?, ?)",
                (time.time(), kind, path, reason),
            )
            conn.execute(
                "DELETE FROM errors WHERE id <= (SELECT MAX(id) FROM errors) - ?", (_MAX_ERRORS,)
            )

    def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest recorded problems, newest first."""
        rows = self._db.read("SELECT * FROM errors ORDER BY id DESC LIMIT ?", (limit,))
        return [
            {"time": r["time"], "kind": r["kind"], "path": r["path"], "reason": r["reason"]}
            for r in rows
        ]

    # --- predictions ------------------------------------------------------------------

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
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO predictions(sha256, version, path, label, probabilities, "
                "time) VALUES(?, ?, ?, ?, ?, ?)",
                (sha256, version, path, label, json.dumps(probabilities), time.time()),
            )

    def prediction_for(self, sha256: str, version: int | None = None) -> dict[str, Any] | None:
        """The prediction for this content by ``version`` (by any version, newest, if None)."""
        if version is None:
            rows = self._db.read(
                "SELECT * FROM predictions WHERE sha256 = ? ORDER BY version DESC LIMIT 1",
                (sha256,),
            )
        else:
            rows = self._db.read(
                "SELECT * FROM predictions WHERE sha256 = ? AND version = ?", (sha256, version)
            )
        if not rows:
            return None
        r = rows[0]
        return {
            "path": r["path"],
            "sha256": r["sha256"],
            "label": r["label"],
            "probabilities": json.loads(r["probabilities"]),
            "version": r["version"],
            "time": r["time"],
        }

    # --- files seen -------------------------------------------------------------------

    def seen_file(self, path: str) -> tuple[int, float, str] | None:
        """(size, mtime, sha256) recorded for ``path`` when it was last taken, if any."""
        rows = self._db.read("SELECT size, mtime, sha256 FROM seen WHERE path = ?", (path,))
        return (rows[0]["size"], rows[0]["mtime"], rows[0]["sha256"]) if rows else None

    def mark_seen(self, path: str, size: int, mtime: float, sha256: str) -> None:
        """Remember that ``path`` was taken with this size, mtime and content.

        ``upsert_correction`` does this itself, in its own transaction.
        """
        with self._db.transaction() as conn:
            mark_seen_row(conn, path, size, mtime, sha256)

    def seen_files(self) -> dict[str, tuple[int, float, str]]:
        """Every remembered path → (size, mtime, sha256), in one query (for rescans)."""
        rows = self._db.read("SELECT path, size, mtime, sha256 FROM seen")
        return {r["path"]: (r["size"], r["mtime"], r["sha256"]) for r in rows}

    def forget_seen(self, path: str) -> None:
        """Forget ``path`` (it was removed)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM seen WHERE path = ?", (path,))

    def seen_paths(self, prefix: str | None = None) -> list[str]:
        """Every remembered path, optionally under ``prefix``."""
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._db.read("SELECT path FROM seen WHERE path LIKE ? ESCAPE '\\'", (like,))
        else:
            rows = self._db.read("SELECT path FROM seen")
        return [r["path"] for r in rows]


def mark_seen_row(
    conn: sqlite3.Connection, path: str, size: int, mtime: float, sha256: str
) -> None:
    """Remember ``path`` inside the caller's transaction."""
    conn.execute(
        "INSERT INTO seen(path, size, mtime, sha256) VALUES(?, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, "
        "sha256 = excluded.sha256",
        (path, size, mtime, sha256),
    )
