"""Rebuilding a lost or unreadable ``manifest.json`` from what survives it.

The version files are the history; the manifest is only their index. When the index
is gone (deleted) or unreadable (emptied, cut short, edited into invalid JSON), every
version file is kept and listed again, and what the database's run records know about
each version (why it was made, its loss, metrics, gate verdict and corrections, and
whether it was promoted) goes back into its entry. Numbering goes on after the highest
number any file, entry or run ever used, so no number is reused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .manifest import Manifest, VersionEntry, now_iso

if TYPE_CHECKING:
    from ..queue.records import Run

# An unreadable manifest modified this recently may be a person's editor half-way
# through saving it: the live check leaves it alone until it has been still this long.
SETTLE_SECONDS = 2.0
BROKEN_SUFFIX = ".broken"


def run_records(db_path: Path) -> dict[int, Run]:
    """Version → what the run that made it recorded (read-only; ``{}`` without a
    readable database)."""
    from ..queue.records import Run  # at call time: the queue package imports the store's

    if not db_path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT id, started, finished, policy, corrections, outcome, version, loss, "
            "metrics, reason, duration FROM runs WHERE version IS NOT NULL ORDER BY id"
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    found: dict[int, Run] = {}
    for run_id, started, finished, policy, corrections, outcome, version, *rest in rows:
        loss, metrics, reason, duration = rest
        found[int(version)] = Run(
            id=run_id,
            started=started,
            finished=finished,
            policy=policy,
            corrections=_json(corrections, []),
            outcome=outcome,
            version=int(version),
            loss=loss,
            metrics=_json(metrics, {}),
            reason=reason,
            duration=duration,
        )
    return found


def _json(text: Any, default: Any) -> Any:
    try:
        value = json.loads(text) if isinstance(text, str) else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def enrich(manifest: Manifest, runs: dict[int, Run]) -> None:
    """Put what the run records know into the rebuilt entries, and the promotions
    into the history; remember the highest number the runs used."""
    for entry in manifest.versions:
        version = entry.version
        run = runs.get(version)
        if version == 1 and run is None:
            entry.reason = "initial"
            entry.promoted = True
            continue
        if run is None:
            continue
        ids = [i for i in run.corrections if isinstance(i, int)]
        promoted = run.outcome == "promoted"
        _update(
            entry,
            reason="update" if promoted or run.outcome != "rejected" else "rejected by gate",
            corrections={"count": len(ids), "ids": ids},
            loss=run.loss,
            metrics=run.metrics,
            gate=run.metrics.get("gate"),
            promoted=bool(entry.promoted) or promoted,
        )
        entry.put("rebuilt", True)
    for version, run in sorted(runs.items()):
        if run.outcome == "promoted":
            when = run.finished
            manifest.history.append(
                {
                    "version": version,
                    "from": None,
                    "time": _iso(when) if isinstance(when, int | float) else now_iso(),
                    "reason": "promote",
                }
            )
    highest = max([0, *runs, *manifest.numbers()])
    manifest.other["rebuilt"] = {"time": now_iso(), "highest_version": highest}


def _update(entry: VersionEntry, **values: Any) -> None:
    for name, value in values.items():
        setattr(entry, name, value)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def set_aside(path: Path) -> Path:
    """Keep an unreadable manifest beside the rebuilt one (``manifest.json.broken``)."""
    kept = path.with_name(path.name + BROKEN_SUFFIX)
    os.replace(path, kept)
    return kept


def settled(path: Path) -> bool:
    """True when ``path`` has not changed for :data:`SETTLE_SECONDS` (or is gone)."""
    try:
        return time.time() - path.stat().st_mtime >= SETTLE_SECONDS
    except OSError:
        return True
