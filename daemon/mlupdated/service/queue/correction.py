"""One correction as the queue hands it out, and what a drop did to it.

A :class:`Correction` is one image *content* (its sha256) with the label it is learned
as and where it stands (see :mod:`.corrections` for the states); a
:class:`CorrectionChange` is what recording a drop did (see :mod:`.drops`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


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
