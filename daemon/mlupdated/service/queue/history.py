"""What the corrections went through: gate rejections, rollbacks, conflicts, removals.

Queries beside :mod:`.corrections` (which records the drops themselves) for the
update runner, ``rollback``, intake's messages and ``status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .correction import Correction, correction_from_row
from .db import PENDING, RETRACTED, TRAINED, Database


@dataclass(frozen=True)
class Conflict:
    """One image held under several labels at once: its paths (→ label) and the label
    it is learned as (the latest drop's)."""

    id: int
    label: str
    paths: dict[str, str]


class History:
    """What the corrections of one database went through."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def gate_rejections(self, ids: Iterable[int]) -> dict[int, int]:
        """How many finished runs the gate rejected while each correction (as it is
        now: same revision) was in their batch."""
        ids = list(ids)
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = self._db.read(
            "SELECT ri.correction_id AS id, COUNT(*) AS n FROM run_items ri "
            "JOIN runs r ON r.id = ri.run_id JOIN corrections c ON c.id = ri.correction_id "
            f"WHERE r.outcome = 'rejected' AND ri.revision = c.revision "
            f"AND ri.correction_id IN ({marks}) GROUP BY ri.correction_id",
            ids,
        )
        return {row["id"]: row["n"] for row in rows}

    def requeue_trained(self, keep: Callable[[int], bool]) -> list[Correction]:
        """Trained corrections whose version fails ``keep`` (a model no longer in the
        current one's line) go back to pending; returns them."""
        now = time.time()
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM corrections WHERE state = ? ORDER BY id", (TRAINED,)
            ).fetchall()
            back = [
                correction_from_row(r)
                for r in rows
                if r["version"] is None or not keep(r["version"])
            ]
            requeued = []
            for c in back:
                held = conn.execute(
                    "SELECT 1 FROM correction_paths WHERE correction_id = ? LIMIT 1", (c.id,)
                ).fetchone()
                # A new revision: earlier gate rejections of it count no more. One whose
                # files were all deleted since is not learned again.
                state, reason = (PENDING, None) if held else (RETRACTED, "file removed")
                conn.execute(
                    "UPDATE corrections SET state = ?, version = NULL, updated = ?, queued = ?, "
                    "reason = ?, revision = revision + 1 WHERE id = ?",
                    (state, now, now, reason, c.id),
                )
                if held:
                    requeued.append(c)
            return requeued

    def learned_only_at(self, path: str) -> Correction | None:
        """The trained correction whose one remaining file is ``path``, if any."""
        rows = self._db.read(
            "SELECT c.* FROM corrections c JOIN correction_paths p ON p.correction_id = c.id "
            "WHERE p.path = ? AND c.state = ? AND (SELECT COUNT(*) FROM correction_paths q "
            "WHERE q.correction_id = c.id) = 1",
            (path, TRAINED),
        )
        return correction_from_row(rows[0]) if rows else None

    def conflicts(self) -> list[Conflict]:
        """Images held under more than one label at once, oldest first."""
        rows = self._db.read(
            "SELECT p.correction_id AS id, p.path AS path, p.label AS plabel, c.label AS label "
            "FROM correction_paths p JOIN corrections c ON c.id = p.correction_id "
            "WHERE p.correction_id IN (SELECT correction_id FROM correction_paths "
            "GROUP BY correction_id HAVING COUNT(DISTINCT label) > 1) "
            "ORDER BY p.correction_id, p.path"
        )
        found: dict[int, Conflict] = {}
        for row in rows:
            entry = found.setdefault(row["id"], Conflict(row["id"], row["label"], {}))
            entry.paths[row["path"]] = row["plabel"]
        return list(found.values())
