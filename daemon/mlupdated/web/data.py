"""What the page shows, read from the workspace without writing to it.

The database is opened read-only (a ``mode=ro`` URI) on each request, so the daemon
stays its only writer; the manifest, ``predictions.jsonl``, ``config.toml`` and the
daemon's ``state/status.json`` are read as files. A workspace whose daemon never ran
has no database yet: then every list is empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import StoreError
from ..service.queue.corrections import Correction, Corrections
from ..service.queue.db import PENDING, REJECTED, TRAINED
from ..service.queue.records import Records, Run
from ..service.status import latest_predictions
from ..service.workspace import Workspace

SQLITE_MAX_ID = 2**63 - 1
PHOTO_ROWS = 500
CORRECTION_ROWS = 300
RUN_ROWS = 50
JSONL_RECORDS = 2000


class ReadOnlyDb:
    """The workspace database opened read-only; quacks like the queue's ``Database``
    for reading, so the queue's own ``Corrections`` and ``Records`` queries run on it."""

    def __init__(self, path: Path) -> None:
        self.db_path = path
        uri = f"file:{quote(str(path))}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database read-only: {exc}", path=path) from exc
        self._conn.row_factory = sqlite3.Row

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}", path=self.db_path) from exc

    def close(self) -> None:
        self._conn.close()


@contextmanager
def reading(workspace: Workspace) -> Iterator[ReadOnlyDb | None]:
    """The database read-only for one request (None: the daemon never made it)."""
    if not Path(workspace.db_path).is_file():
        yield None
        return
    db = ReadOnlyDb(Path(workspace.db_path))
    try:
        yield db
    finally:
        db.close()


# --- photos ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One inbox photo and what the model said about it."""

    id: int
    sha256: str
    path: str
    label: str
    probability: float | None
    version: int
    time: float
    corrected_as: str | None = None
    correction_state: str | None = None
    neither: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _photo(row: sqlite3.Row, neither: set[str]) -> Photo:
    try:
        probabilities = json.loads(row["probabilities"])
    except ValueError:
        probabilities = {}
    probability = probabilities.get(row["label"]) if isinstance(probabilities, dict) else None
    return Photo(
        id=row["id"],
        sha256=row["sha256"],
        path=row["path"],
        label=row["label"],
        probability=float(probability) if isinstance(probability, int | float) else None,
        version=row["version"],
        time=row["time"],
        corrected_as=row["clabel"] if row["cstate"] not in (None, "retracted") else None,
        correction_state=row["cstate"] if row["cstate"] != "retracted" else None,
        neither=row["sha256"] in neither,
    )


_PHOTO_SQL = (
    "SELECT p.rowid AS id, p.sha256, p.version, p.path, p.label, p.probabilities, p.time, "
    "c.label AS clabel, c.state AS cstate FROM predictions p "
    "LEFT JOIN corrections c ON c.sha256 = p.sha256 "
)


def recent_photos(db: ReadOnlyDb | None, workspace: Workspace) -> list[Photo]:
    """The latest inbox predictions, newest first, one per content."""
    if db is None:
        return []
    rows = db.read(_PHOTO_SQL + "ORDER BY p.time DESC, p.rowid DESC LIMIT ?", (PHOTO_ROWS,))
    neither = {
        str(r.get("sha256"))
        for r in latest_predictions(Path(workspace.predictions_log), JSONL_RECORDS)
        if r.get("neither")
    }
    seen: set[str] = set()
    photos = []
    for row in rows:
        if row["sha256"] in seen:
            continue
        seen.add(row["sha256"])
        photos.append(_photo(row, neither))
    return photos


def photo_by_id(db: ReadOnlyDb | None, photo_id: int) -> Photo | None:
    """One photo by its database id (None when there is no such id)."""
    if db is None or not 0 < photo_id <= SQLITE_MAX_ID:
        return None
    rows = db.read(_PHOTO_SQL + "WHERE p.rowid = ?", (photo_id,))
    return _photo(rows[0], set()) if rows else None


def newest_photo_id(db: ReadOnlyDb | None) -> int:
    if db is None:
        return 0
    return int(db.read("SELECT COALESCE(MAX(rowid), 0) FROM predictions")[0][0])


# --- corrections and runs -------------------------------------------------------------


@dataclass(frozen=True)
class CorrectionRow:
    """One correction as the corrections page lists it."""

    id: int
    label: str
    path: str
    state: str
    version: int | None
    reason: str | None
    updated: float


def corrections_by_state(db: ReadOnlyDb | None) -> dict[str, list[CorrectionRow]]:
    """Pending, trained and rejected corrections, most recently changed first."""
    out: dict[str, list[CorrectionRow]] = {PENDING: [], TRAINED: [], REJECTED: []}
    if db is None:
        return out
    rows = db.read(
        "SELECT id, label, path, state, version, reason, updated FROM corrections "
        "WHERE state IN (?, ?, ?) ORDER BY updated DESC, id DESC LIMIT ?",
        (PENDING, TRAINED, REJECTED, CORRECTION_ROWS),
    )
    for row in rows:
        out[row["state"]].append(CorrectionRow(**{k: row[k] for k in row.keys()}))
    return out


def correction_path(db: ReadOnlyDb | None, correction_id: int) -> tuple[str, str] | None:
    """(path, sha256) of one correction by id."""
    if db is None or not 0 < correction_id <= SQLITE_MAX_ID:
        return None
    found = Corrections(db).correction(correction_id)  # type: ignore[arg-type]
    return (found.path, found.sha256) if found else None


def correction_for(db: ReadOnlyDb | None, sha256: str) -> Correction | None:
    """The queue's correction for this content (None: none yet)."""
    if db is None:
        return None
    return Corrections(db).correction_by_sha(sha256)  # type: ignore[arg-type]


def queue_numbers(db: ReadOnlyDb | None) -> dict[str, Any]:
    """Counts, pending per label, the oldest pending and the last drop (epoch seconds)."""
    if db is None:
        return {"counts": {}, "pending": {}, "oldest": None, "last_drop": None}
    corrections = Corrections(db)  # type: ignore[arg-type]
    return {
        "counts": corrections.counts(),
        "pending": corrections.pending_counts(),
        "oldest": corrections.oldest_pending_time(),
        "last_drop": corrections.last_drop_time(),
    }


def runs(db: ReadOnlyDb | None, limit: int = RUN_ROWS) -> list[Run]:
    """The latest update runs, newest first (the queue's own records)."""
    if db is None:
        return []
    return Records(db).runs(limit)  # type: ignore[arg-type]


def recent_errors(db: ReadOnlyDb | None, limit: int = 5) -> list[dict[str, Any]]:
    if db is None:
        return []
    return Records(db).recent_errors(limit)  # type: ignore[arg-type]
