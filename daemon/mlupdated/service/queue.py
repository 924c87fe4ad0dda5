"""The durable queue: corrections, runs, predictions and seen files in SQLite (WAL).

One database per workspace (``state/mlupdated.db``). Every write is one transaction
(``BEGIN IMMEDIATE`` … ``COMMIT``), so a kill at any moment leaves either the old
state or the new one. A correction is one *content* (its sha256): the same bytes
dropped again are not a second example; dropped under another label, the latest label
wins. A content may be held by several paths (conflict copies); it is retracted only
when the last of them goes away before it was trained on.

States: ``pending`` → ``trained`` (with the model version) or ``rejected`` (with the
reason; only for corrections that can never be used) or ``retracted`` (its files were
removed before training). Every change is stamped with its time.
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiskFullError, StoreError

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 10.0

PENDING = "pending"
TRAINED = "trained"
REJECTED = "rejected"
RETRACTED = "retracted"
STATES = (PENDING, TRAINED, REJECTED, RETRACTED)

RUN_OUTCOMES = ("promoted", "rejected", "failed", "abandoned")

_SCHEMA = """
CREATE TABLE corrections (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime       REAL NOT NULL,
    first_seen  REAL NOT NULL,
    updated     REAL NOT NULL,
    queued      REAL NOT NULL,
    state       TEXT NOT NULL,
    version     INTEGER,
    reason      TEXT,
    revision    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX corrections_state ON corrections(state);
CREATE TABLE correction_paths (
    path          TEXT PRIMARY KEY,
    correction_id INTEGER NOT NULL REFERENCES corrections(id),
    label         TEXT NOT NULL,
    added         REAL NOT NULL
);
CREATE INDEX correction_paths_id ON correction_paths(correction_id);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started     REAL NOT NULL,
    finished    REAL,
    policy      TEXT NOT NULL,
    corrections TEXT NOT NULL,
    outcome     TEXT,
    version     INTEGER,
    loss        REAL,
    metrics     TEXT,
    reason      TEXT,
    duration    REAL
);
CREATE TABLE run_items (
    run_id        INTEGER NOT NULL,
    correction_id INTEGER NOT NULL,
    revision      INTEGER NOT NULL,
    PRIMARY KEY (run_id, correction_id)
);
CREATE INDEX run_items_correction ON run_items(correction_id);
CREATE TABLE errors (
    id     INTEGER PRIMARY KEY,
    time   REAL NOT NULL,
    kind   TEXT NOT NULL,
    path   TEXT,
    reason TEXT NOT NULL
);
CREATE TABLE predictions (
    sha256        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    path          TEXT NOT NULL,
    label         TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    time          REAL NOT NULL,
    PRIMARY KEY (sha256, version)
);
CREATE TABLE seen (
    path   TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    mtime  REAL NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_LOW_SPACE_BYTES = 1 << 20

# Errors are a rolling window, not a history: keep the table small.
_MAX_ERRORS = 1000


@dataclass(frozen=True)
class Correction:
    """One correction (one image content) and where it stands."""

    id: int
    sha256: str
    label: str
    path: str
    first_seen: float
    updated: float
    state: str
    version: int | None
    reason: str | None


@dataclass(frozen=True)
class CorrectionChange:
    """What ``upsert_correction`` did: ``new``, ``duplicate``, ``relabelled`` or ``unchanged``."""

    kind: str
    correction: Correction
    path: str
    previous_label: str | None = None


def _correction(row: sqlite3.Row) -> Correction:
    return Correction(
        id=row["id"],
        sha256=row["sha256"],
        label=row["label"],
        path=row["path"],
        first_seen=row["first_seen"],
        updated=row["updated"],
        state=row["state"],
        version=row["version"],
        reason=row["reason"],
    )


class Queue:
    """The workspace database. Thread-safe: one connection guarded by a lock."""

    def __init__(self, db_path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.db_path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._translate(exc) from exc
        self._conn.row_factory = sqlite3.Row
        with self._errors():
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"cannot switch the database to WAL mode (got {mode})", path=self.db_path
                )
            # NORMAL is WAL's durable-against-a-kill setting: a committed transaction
            # survives the process dying at any point. A power cut may lose the last few
            # commits, which costs nothing here: the dropped files are the truth and the
            # start-up rescan queues them again (FULL would fsync every drop, which makes
            # a 10,000-file burst take minutes).
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()

    # --- plumbing ---------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> StoreError:
        text = str(exc)
        if self._looks_full(exc):
            return DiskFullError(f"disk full while writing the queue ({text})", path=self.db_path)
        if "locked" in text.lower() or "busy" in text.lower():
            return StoreError(
                f"database is locked by another process ({text}); is a second daemon or "
                "tool holding it?",
                path=self.db_path,
            )
        return StoreError(f"database error: {text}", path=self.db_path)

    def _looks_full(self, exc: BaseException) -> bool:
        if getattr(exc, "errno", None) in _FULL_ERRNOS or "full" in str(exc).lower():
            return True
        # SQLite reports a refused write (ENOSPC from some file systems, EFBIG from a file
        # size limit) as a generic I/O error; tell the user what it most likely is.
        if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_IOERR"):
            return False
        try:
            soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            if soft != resource.RLIM_INFINITY:
                return True
            info = os.statvfs(self.db_path.parent)
            return info.f_bavail * info.f_frsize < _LOW_SPACE_BYTES
        except (OSError, ValueError):
            return False

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up-front so readers never see half of it."""
        with self._lock, self._errors():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._errors():
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema {version} is newer than this mlupdated knows "
                f"({SCHEMA_VERSION}); upgrade mlupdated",
                path=self.db_path,
            )
        if version == 0:
            with self._write() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def journal_mode(self) -> str:
        """The SQLite journal mode in use (``wal``)."""
        return str(self._read("PRAGMA journal_mode")[0][0]).lower()

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- corrections ------------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, correction_id: int) -> Correction:
        row = conn.execute("SELECT * FROM corrections WHERE id = ?", (correction_id,)).fetchone()
        return _correction(row)

    def _set_meta(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def _detach_path(self, conn: sqlite3.Connection, path: str, now: float) -> bool:
        """Remove ``path`` from its correction; retract a pending one left without paths."""
        row = conn.execute(
            "SELECT correction_id FROM correction_paths WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return False
        cid = row["correction_id"]
        conn.execute("DELETE FROM correction_paths WHERE path = ?", (path,))
        rest = conn.execute(
            "SELECT path, label FROM correction_paths WHERE correction_id = ? "
            "ORDER BY added DESC, path DESC LIMIT 1",
            (cid,),
        ).fetchone()
        current = self._get(conn, cid)
        if rest is None:
            if current.state == PENDING:
                conn.execute(
                    "UPDATE corrections SET state = ?, updated = ?, reason = ?, "
                    "revision = revision + 1 WHERE id = ?",
                    (RETRACTED, now, "file removed before training", cid),
                )
                return True
            return False
        # The newest remaining copy speaks for the content now.
        if current.path == path or current.label != rest["label"]:
            changed_label = current.label != rest["label"]
            conn.execute(
                "UPDATE corrections SET path = ?, label = ?, updated = ?, "
                "revision = revision + ? WHERE id = ?",
                (rest["path"], rest["label"], now, 1 if changed_label else 0, cid),
            )
            if changed_label and current.state == TRAINED:
                conn.execute(
                    "UPDATE corrections SET state = ?, version = NULL, queued = ? WHERE id = ?",
                    (PENDING, now, cid),
                )
        return False

    def upsert_correction(
        self, *, path: str, sha256: str, label: str, size: int, mtime: float
    ) -> CorrectionChange:
        """Record that ``path`` (relative to the workspace) holds ``sha256`` under ``label``.

        Same content, same label, new path → ``duplicate``; same content, other label →
        ``relabelled`` (the latest label wins; a trained one goes back to pending to be
        learned with its new label); already recorded exactly so → ``unchanged``.
        """
        now = time.time()
        with self._write() as conn:
            known = conn.execute(
                "SELECT correction_id, label FROM correction_paths WHERE path = ?", (path,)
            ).fetchone()
            row = conn.execute("SELECT * FROM corrections WHERE sha256 = ?", (sha256,)).fetchone()
            if known is not None and row is not None and known["correction_id"] == row["id"]:
                if known["label"] == label and row["state"] != RETRACTED:
                    self._mark_seen(conn, path, size, mtime, sha256)
                    return CorrectionChange("unchanged", _correction(row), path)
            if known is not None and (row is None or known["correction_id"] != row["id"]):
                # The file at this path now holds other bytes: the old content loses it.
                self._detach_path(conn, path, now)
            conn.execute("DELETE FROM correction_paths WHERE path = ?", (path,))
            if row is None:
                cur = conn.execute(
                    "INSERT INTO corrections(sha256, label, path, size, mtime, first_seen, "
                    "updated, queued, state) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sha256, label, path, size, mtime, now, now, now, PENDING),
                )
                cid = int(cur.lastrowid)
                kind, previous = "new", None
            else:
                cid = row["id"]
                previous = row["label"]
                state = row["state"]
                if previous != label:
                    kind = "relabelled"
                    # A relabelled content must be learned again, with its new label.
                    new_state = PENDING if state in (TRAINED, RETRACTED, PENDING) else state
                    conn.execute(
                        "UPDATE corrections SET label = ?, path = ?, size = ?, mtime = ?, "
                        "updated = ?, state = ?, version = CASE WHEN ? = 'pending' THEN NULL "
                        "ELSE version END, reason = NULL, revision = revision + 1, "
                        "queued = CASE WHEN state = 'pending' THEN queued ELSE ? END "
                        "WHERE id = ?",
                        (label, path, size, mtime, now, new_state, new_state, now, cid),
                    )
                elif state == RETRACTED:
                    kind = "new"
                    conn.execute(
                        "UPDATE corrections SET path = ?, size = ?, mtime = ?, updated = ?, "
                        "queued = ?, state = ?, reason = NULL, revision = revision + 1 "
                        "WHERE id = ?",
                        (path, size, mtime, now, now, PENDING, cid),
                    )
                else:
                    kind = "duplicate"
                    conn.execute(
                        "UPDATE corrections SET path = ?, updated = ? WHERE id = ?",
                        (path, now, cid),
                    )
            conn.execute(
                "INSERT INTO correction_paths(path, correction_id, label, added) "
                "VALUES(?, ?, ?, ?)",
                (path, cid, label, now),
            )
            self._mark_seen(conn, path, size, mtime, sha256)
            self._set_meta(conn, "last_drop", now)
            return CorrectionChange(kind, self._get(conn, cid), path, previous)

    def retract_path(self, path: str) -> bool:
        """``path`` is gone: forget it; True if that retracted a pending correction."""
        with self._write() as conn:
            return self._detach_path(conn, path, time.time())

    def correction_paths(self, prefix: str | None = None) -> dict[str, str]:
        """Every path that holds a correction (→ its label), optionally under ``prefix``."""
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._read(
                "SELECT path, label FROM correction_paths WHERE path LIKE ? ESCAPE '\\'", (like,)
            )
        else:
            rows = self._read("SELECT path, label FROM correction_paths")
        return {row["path"]: row["label"] for row in rows}

    def holds_path(self, path: str) -> bool:
        """True when ``path`` is recorded as holding a correction."""
        return bool(self._read("SELECT 1 FROM correction_paths WHERE path = ?", (path,)))

    def correction(self, correction_id: int) -> Correction | None:
        """One correction by id."""
        rows = self._read("SELECT * FROM corrections WHERE id = ?", (correction_id,))
        return _correction(rows[0]) if rows else None

    def correction_by_sha(self, sha256: str) -> Correction | None:
        """The correction holding this content, if any."""
        rows = self._read("SELECT * FROM corrections WHERE sha256 = ?", (sha256,))
        return _correction(rows[0]) if rows else None

    def pending(self) -> list[Correction]:
        """Pending corrections, oldest first."""
        rows = self._read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (PENDING,))
        return [_correction(r) for r in rows]

    def pending_counts(self) -> dict[str, int]:
        """Pending corrections per label."""
        rows = self._read(
            "SELECT label, COUNT(*) AS n FROM corrections WHERE state = ? GROUP BY label "
            "ORDER BY label",
            (PENDING,),
        )
        return {row["label"]: row["n"] for row in rows}

    def counts(self) -> dict[str, int]:
        """Corrections per state (every state present, zero included)."""
        rows = self._read("SELECT state, COUNT(*) AS n FROM corrections GROUP BY state")
        result = dict.fromkeys(STATES, 0)
        result.update({row["state"]: row["n"] for row in rows})
        return result

    def oldest_pending_time(self) -> float | None:
        """When the longest-waiting pending correction was queued (epoch seconds)."""
        rows = self._read("SELECT MIN(queued) FROM corrections WHERE state = ?", (PENDING,))
        return rows[0][0]

    def last_drop_time(self) -> float | None:
        """When the last correction was added or changed by a drop (epoch seconds)."""
        rows = self._read("SELECT value FROM meta WHERE key = 'last_drop'")
        return json.loads(rows[0][0]) if rows else None

    def mark_trained(self, ids: Iterable[int], version: int) -> int:
        """Mark corrections trained into ``version``; returns how many were marked.

        A correction relabelled or retracted after its run started is left alone: what
        the run learned is no longer what the user says.
        """
        ids = list(ids)
        now = time.time()
        with self._write() as conn:
            marked = 0
            for cid in ids:
                cur = conn.execute(
                    "UPDATE corrections SET state = ?, version = ?, updated = ?, reason = NULL "
                    "WHERE id = ? AND state = ? AND revision = COALESCE(("
                    "  SELECT revision FROM run_items WHERE correction_id = corrections.id "
                    "  ORDER BY run_id DESC LIMIT 1), revision)",
                    (TRAINED, version, now, cid, PENDING),
                )
                marked += cur.rowcount
            return marked

    def mark_rejected(self, ids: Iterable[int], reason: str) -> int:
        """Mark corrections that can never be used (unreadable image …) with the reason."""
        now = time.time()
        with self._write() as conn:
            marked = 0
            for cid in ids:
                cur = conn.execute(
                    "UPDATE corrections SET state = ?, reason = ?, updated = ? "
                    "WHERE id = ? AND state = ?",
                    (REJECTED, reason, now, cid, PENDING),
                )
                marked += cur.rowcount
            return marked

    def trained_sample(self, n: int, *, seed: int | None) -> list[Correction]:
        """Up to ``n`` trained corrections, a seeded random sample (for replay)."""
        rows = self._read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (TRAINED,))
        items = [_correction(r) for r in rows]
        if len(items) <= n:
            return items
        return sorted(random.Random(seed).sample(items, n), key=lambda c: c.id)

    def all_trained(self) -> list[Correction]:
        """Every trained correction, oldest first."""
        rows = self._read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (TRAINED,))
        return [_correction(r) for r in rows]

    # --- runs -------------------------------------------------------------------------

    def start_run(self, *, correction_ids: Iterable[int], policy: str) -> int:
        """Record that an update run starts on these corrections; returns the run id."""
        ids = list(correction_ids)
        with self._write() as conn:
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
        outcome: str,
        version: int | None,
        loss: float | None,
        metrics: dict[str, Any],
        reason: str | None,
        duration: float,
    ) -> None:
        """Record how a run ended."""
        if outcome not in RUN_OUTCOMES:
            raise ValueError(f"unknown run outcome {outcome!r}")
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET finished = ?, outcome = ?, version = ?, loss = ?, metrics = ?, "
                "reason = ?, duration = ? WHERE id = ?",
                (
                    time.time(),
                    outcome,
                    version,
                    loss,
                    json.dumps(metrics, default=str),
                    reason,
                    duration,
                    run_id,
                ),
            )

    @staticmethod
    def _run(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "started": row["started"],
            "finished": row["finished"],
            "policy": row["policy"],
            "corrections": json.loads(row["corrections"]),
            "outcome": row["outcome"],
            "version": row["version"],
            "loss": row["loss"],
            "metrics": json.loads(row["metrics"]) if row["metrics"] else {},
            "reason": row["reason"],
            "duration": row["duration"],
        }

    def last_run(self) -> dict[str, Any] | None:
        """The most recent run (``outcome`` None while it is still running)."""
        rows = self._read("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
        return self._run(rows[0]) if rows else None

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        rows = self._read("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._run(r) for r in rows]

    def interrupted_runs(self) -> list[dict[str, Any]]:
        """Runs that started and never finished (the daemon was killed)."""
        rows = self._read("SELECT * FROM runs WHERE finished IS NULL ORDER BY id")
        return [self._run(r) for r in rows]

    # --- errors -----------------------------------------------------------------------

    def record_error(self, kind: str, path: str | None, reason: str) -> None:
        """Remember a problem for ``status`` (a rolling window of the latest ones)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO errors(time, kind, path, reason) VALUES(?, ?, ?, ?)",
                (time.time(), kind, path, reason),
            )
            conn.execute(
                "DELETE FROM errors WHERE id <= (SELECT MAX(id) FROM errors) - ?", (_MAX_ERRORS,)
            )

    def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest recorded problems, newest first."""
        rows = self._read("SELECT * FROM errors ORDER BY id DESC LIMIT ?", (limit,))
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
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO predictions(sha256, version, path, label, probabilities, "
                "time) VALUES(?, ?, ?, ?, ?, ?)",
                (sha256, version, path, label, json.dumps(probabilities), time.time()),
            )

    def prediction_for(self, sha256: str, version: int | None = None) -> dict[str, Any] | None:
        """The prediction for this content by ``version`` (by any version, newest, if None)."""
        if version is None:
            rows = self._read(
                "SELECT * FROM predictions WHERE sha256 = ? ORDER BY version DESC LIMIT 1",
                (sha256,),
            )
        else:
            rows = self._read(
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
        rows = self._read("SELECT size, mtime, sha256 FROM seen WHERE path = ?", (path,))
        return (rows[0]["size"], rows[0]["mtime"], rows[0]["sha256"]) if rows else None

    def mark_seen(self, path: str, size: int, mtime: float, sha256: str) -> None:
        """Remember that ``path`` was taken with this size, mtime and content.

        ``upsert_correction`` does this itself, in its own transaction.
        """
        with self._write() as conn:
            self._mark_seen(conn, path, size, mtime, sha256)

    @staticmethod
    def _mark_seen(
        conn: sqlite3.Connection, path: str, size: int, mtime: float, sha256: str
    ) -> None:
        conn.execute(
            "INSERT INTO seen(path, size, mtime, sha256) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, "
            "sha256 = excluded.sha256",
            (path, size, mtime, sha256),
        )

    def seen_files(self) -> dict[str, tuple[int, float, str]]:
        """Every remembered path → (size, mtime, sha256), in one query (for rescans)."""
        rows = self._read("SELECT path, size, mtime, sha256 FROM seen")
        return {r["path"]: (r["size"], r["mtime"], r["sha256"]) for r in rows}

    def forget_seen(self, path: str) -> None:
        """Forget ``path`` (it was removed)."""
        with self._write() as conn:
            conn.execute("DELETE FROM seen WHERE path = ?", (path,))

    def seen_paths(self, prefix: str | None = None) -> list[str]:
        """Every remembered path, optionally under ``prefix``."""
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._read("SELECT path FROM seen WHERE path LIKE ? ESCAPE '\\'", (like,))
        else:
            rows = self._read("SELECT path FROM seen")
        return [r["path"] for r in rows]
