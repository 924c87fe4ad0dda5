"""The corrections: one row per image *content* (its sha256), with the paths that hold it.

The same bytes dropped again are not a second example; dropped under another label,
the latest label wins. A content may be held by several paths (conflict copies); it is
retracted only when the last of them goes away before it was trained on. Every write
is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), so a kill at any moment leaves
either the old state or the new one.

States: ``pending`` → ``trained`` (with the model version) or ``rejected`` (with the
reason; only for corrections that can never be used) or ``retracted`` (its files were
removed before training). Every change is stamped with its time.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .db import PENDING, REJECTED, RETRACTED, STATES, TRAINED, Database
from .records import mark_seen_row

# The start of the reason of a correction the gate refused ``update.max_attempts`` times.
GATE_GAVE_UP = "the gate rejected the model trained on it"


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
    # Other paths holding the same image under another label right now (a conflict:
    # the same photo in Cat/ and Dog/ at once; the latest drop's label is used).
    conflicts: tuple[str, ...] = ()


def correction_from_row(row: sqlite3.Row) -> Correction:
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


class Corrections:
    """The corrections of one database: one row per image content, with its paths."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- corrections ------------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, correction_id: int) -> Correction:
        row = conn.execute("SELECT * FROM corrections WHERE id = ?", (correction_id,)).fetchone()
        return correction_from_row(row)

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
        with self._db.transaction() as conn:
            known = conn.execute(
                "SELECT correction_id, label FROM correction_paths WHERE path = ?", (path,)
            ).fetchone()
            row = conn.execute("SELECT * FROM corrections WHERE sha256 = ?", (sha256,)).fetchone()
            if known is not None and row is not None and known["correction_id"] == row["id"]:
                if known["label"] == label and row["state"] != RETRACTED:
                    mark_seen_row(conn, path, size, mtime, sha256)
                    return CorrectionChange("unchanged", correction_from_row(row), path)
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
                cid, previous = row["id"], row["label"]
                kind = _update_known(conn, row, label, path, size, mtime, now)
            conn.execute(
                "INSERT INTO correction_paths(path, correction_id, label, added) "
                "VALUES(?, ?, ?, ?)",
                (path, cid, label, now),
            )
            mark_seen_row(conn, path, size, mtime, sha256)
            self._set_meta(conn, "last_drop", now)
            others = conn.execute(
                "SELECT path FROM correction_paths WHERE correction_id = ? AND label != ? "
                "ORDER BY path",
                (cid, label),
            ).fetchall()
            conflicts = tuple(r["path"] for r in others)
            return CorrectionChange(kind, self._get(conn, cid), path, previous, conflicts)

    def retract_path(self, path: str) -> bool:
        """``path`` is gone: forget it; True if that retracted a pending correction."""
        with self._db.transaction() as conn:
            return self._detach_path(conn, path, time.time())

    def correction_paths(self, prefix: str | None = None) -> dict[str, str]:
        """Every path that holds a correction (→ its label), optionally under ``prefix``."""
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._db.read(
                "SELECT path, label FROM correction_paths WHERE path LIKE ? ESCAPE '\\'", (like,)
            )
        else:
            rows = self._db.read("SELECT path, label FROM correction_paths")
        return {row["path"]: row["label"] for row in rows}

    def holds_path(self, path: str) -> bool:
        """True when ``path`` is recorded as holding a correction."""
        return bool(self._db.read("SELECT 1 FROM correction_paths WHERE path = ?", (path,)))

    def correction(self, correction_id: int) -> Correction | None:
        """One correction by id."""
        rows = self._db.read("SELECT * FROM corrections WHERE id = ?", (correction_id,))
        return correction_from_row(rows[0]) if rows else None

    def correction_by_sha(self, sha256: str) -> Correction | None:
        """The correction holding this content, if any."""
        rows = self._db.read("SELECT * FROM corrections WHERE sha256 = ?", (sha256,))
        return correction_from_row(rows[0]) if rows else None

    def pending(self) -> list[Correction]:
        """Pending corrections, oldest first."""
        rows = self._db.read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (PENDING,))
        return [correction_from_row(r) for r in rows]

    def pending_counts(self) -> dict[str, int]:
        """Pending corrections per label."""
        rows = self._db.read(
            "SELECT label, COUNT(*) AS n FROM corrections WHERE state = ? GROUP BY label "
            "ORDER BY label",
            (PENDING,),
        )
        return {row["label"]: row["n"] for row in rows}

    def counts(self) -> dict[str, int]:
        """Corrections per state (every state present, zero included)."""
        rows = self._db.read("SELECT state, COUNT(*) AS n FROM corrections GROUP BY state")
        result = dict.fromkeys(STATES, 0)
        result.update({row["state"]: row["n"] for row in rows})
        return result

    def oldest_pending_time(self) -> float | None:
        """When the longest-waiting pending correction was queued (epoch seconds)."""
        rows = self._db.read("SELECT MIN(queued) FROM corrections WHERE state = ?", (PENDING,))
        return rows[0][0]

    def last_drop_time(self) -> float | None:
        """When the last correction was added or changed by a drop (epoch seconds)."""
        rows = self._db.read("SELECT value FROM meta WHERE key = 'last_drop'")
        return json.loads(rows[0][0]) if rows else None

    def mark_trained(self, ids: Iterable[int], version: int) -> int:
        """Mark corrections trained into ``version``; returns how many were marked.

        A correction relabelled or retracted after its run started is left alone: what
        the run learned is no longer what the user says.
        """
        ids = list(ids)
        now = time.time()
        with self._db.transaction() as conn:
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
        with self._db.transaction() as conn:
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
        rows = self._db.read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (TRAINED,))
        items = [correction_from_row(r) for r in rows]
        if len(items) <= n:
            return items
        return sorted(random.Random(seed).sample(items, n), key=lambda c: c.id)

    def all_trained(self) -> list[Correction]:
        """Every trained correction, oldest first."""
        rows = self._db.read("SELECT * FROM corrections WHERE state = ? ORDER BY id", (TRAINED,))
        return [correction_from_row(r) for r in rows]


def _update_known(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    label: str,
    path: str,
    size: int,
    mtime: float,
    now: float,
) -> str:
    """A known content dropped again at ``path``: relabel, revive or note the copy;
    returns the kind of change."""
    cid, previous, state = row["id"], row["label"], row["state"]
    if previous != label:
        kind = "relabelled"
        # A relabelled content must be learned again, with its new label.
        new_state = PENDING if state in (TRAINED, RETRACTED, PENDING, REJECTED) else state
        conn.execute(
            "UPDATE corrections SET label = ?, path = ?, size = ?, mtime = ?, "
            "updated = ?, state = ?, version = CASE WHEN ? = 'pending' THEN NULL "
            "ELSE version END, reason = NULL, revision = revision + 1, "
            "queued = CASE WHEN state = 'pending' THEN queued ELSE ? END "
            "WHERE id = ?",
            (label, path, size, mtime, now, new_state, new_state, now, cid),
        )
    elif state == RETRACTED or (
        state == REJECTED and (row["reason"] or "").startswith(GATE_GAVE_UP)
    ):
        # Dropped again: retracted, or given up on by the gate (the way to retry it).
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
    return kind
