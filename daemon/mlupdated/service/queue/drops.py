"""What a drop or a removal does to the corrections, inside the caller's transaction.

The same bytes dropped again are not a second example; dropped under another label,
the latest label wins. A content may be held by several paths (conflict copies); it is
retracted only when the last of them goes away before it was trained on. Each function
here takes the open connection of one ``BEGIN IMMEDIATE`` … ``COMMIT`` (see
:class:`.corrections.Corrections`), so a kill at any moment leaves either the old state
or the new one.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .correction import Correction, CorrectionChange, correction_from_row
from .db import PENDING, REJECTED, RETRACTED, TRAINED
from .records import mark_seen_row

# The start of the reason of a correction the gate refused ``update.max_attempts`` times.
GATE_GAVE_UP = "the gate rejected the model trained on it"


def get_correction(conn: sqlite3.Connection, correction_id: int) -> Correction:
    """One correction by id, read through ``conn``."""
    row = conn.execute("SELECT * FROM corrections WHERE id = ?", (correction_id,)).fetchone()
    return correction_from_row(row)


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


def detach_path(conn: sqlite3.Connection, path: str, now: float) -> bool:
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
    current = get_correction(conn, cid)
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


def upsert(
    conn: sqlite3.Connection,
    *,
    path: str,
    sha256: str,
    label: str,
    size: int,
    mtime: float,
    now: float,
) -> CorrectionChange:
    """Record that ``path`` (relative to the workspace) holds ``sha256`` under ``label``.

    Same content, same label, new path → ``duplicate``; same content, other label →
    ``relabelled`` (the latest label wins; a trained one goes back to pending to be
    learned with its new label); already recorded exactly so → ``unchanged``.
    """
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
        detach_path(conn, path, now)
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
        "INSERT INTO correction_paths(path, correction_id, label, added) VALUES(?, ?, ?, ?)",
        (path, cid, label, now),
    )
    mark_seen_row(conn, path, size, mtime, sha256)
    _set_meta(conn, "last_drop", now)
    others = conn.execute(
        "SELECT path FROM correction_paths WHERE correction_id = ? AND label != ? ORDER BY path",
        (cid, label),
    ).fetchall()
    conflicts = tuple(r["path"] for r in others)
    return CorrectionChange(kind, get_correction(conn, cid), path, previous, conflicts)


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
