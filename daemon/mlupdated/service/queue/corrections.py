"""The corrections: one row per image *content* (its sha256), with the paths that hold it.

The same bytes dropped again are not a second example; dropped under another label,
the latest label wins (what a drop or a removal does is in :mod:`.drops`; the records
are in :mod:`.correction`). Every write is one transaction (``BEGIN IMMEDIATE`` …
``COMMIT``), so a kill at any moment leaves either the old state or the new one.

States: ``pending`` → ``trained`` (with the model version) or ``rejected`` (with the
reason; only for corrections that can never be used) or ``retracted`` (its files were
removed before training). Every change is stamped with its time.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable

from .correction import Correction, CorrectionChange, correction_from_row
from .db import PENDING, REJECTED, STATES, TRAINED, Database
from .drops import GATE_GAVE_UP, detach_path, upsert

__all__ = [
    "GATE_GAVE_UP",
    "Correction",
    "CorrectionChange",
    "Corrections",
    "correction_from_row",
]


class Corrections:
    """The corrections of one database: one row per image content, with its paths."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- corrections ------------------------------------------------------------------

    def upsert_correction(
        self, *, path: str, sha256: str, label: str, size: int, mtime: float
    ) -> CorrectionChange:
        """Record that ``path`` (relative to the workspace) holds ``sha256`` under ``label``
        (see :func:`.drops.upsert` for what that does)."""
        now = time.time()
        with self._db.transaction() as conn:
            return upsert(
                conn, path=path, sha256=sha256, label=label, size=size, mtime=mtime, now=now
            )

    def retract_path(self, path: str) -> bool:
        """``path`` is gone: forget it; True if that retracted a pending correction."""
        with self._db.transaction() as conn:
            return detach_path(conn, path, time.time())

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
