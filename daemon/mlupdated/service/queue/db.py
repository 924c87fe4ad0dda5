"""The queue's database plumbing: SQLite in WAL mode, schema, transactions, errors.

One connection guarded by a lock (the daemon's threads share it); every write is one
``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, so a kill at any moment leaves either the
old state or the new one. SQLite's errors come out as ``StoreError`` naming the
database (``DiskFullError`` when the disk or a file size limit is full).
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DiskFullError, StoreError

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 10.0

PENDING = "pending"
TRAINED = "trained"
REJECTED = "rejected"
RETRACTED = "retracted"
STATES = (PENDING, TRAINED, REJECTED, RETRACTED)


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


class Database:
    """The workspace database: connection, schema migration, transactions."""

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
    def transaction(self) -> Iterator[sqlite3.Connection]:
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

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """The rows of one query."""
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
            with self.transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def journal_mode(self) -> str:
        """The SQLite journal mode in use (``wal``)."""
        return str(self.read("PRAGMA journal_mode")[0][0]).lower()

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
