"""``mlupdated status``: what the workspace and its daemon are doing.

Most answers come from the database and the model store, which any process may read.
What only the running daemon knows (the next trigger, the observer's health) it writes
to ``state/status.json`` every few seconds; ``status`` shows it while the daemon runs.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import atomic_write_bytes
from .control import daemon_pid, is_paused

if TYPE_CHECKING:
    from .workspace import Workspace

STATUS_FILE = "status.json"
RECENT_ERRORS = 10
# The latest inbox predictions shown (read from the end of predictions.jsonl).
LATEST_PREDICTIONS = 3
TAIL_BYTES = 64 * 1024


def status_path(workspace: Workspace) -> Path:
    """Where the daemon publishes its live state."""
    return Path(workspace.state) / STATUS_FILE


def write_daemon_status(workspace: Workspace, data: dict[str, Any]) -> None:
    """Publish the daemon's live state (atomically, so readers never see half)."""
    payload = {**data, "written": _iso(time.time())}
    atomic_write_bytes(status_path(workspace), json.dumps(payload, default=str).encode())


def read_daemon_status(workspace: Workspace) -> dict[str, Any] | None:
    """The daemon's last published state, or None."""
    try:
        return json.loads(status_path(workspace).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect_status(workspace: Workspace) -> dict[str, Any]:
    """Everything ``status`` reports, as one JSON-ready dict."""
    from .queue import Queue
    from .store import ModelStore

    store = ModelStore(workspace)
    queue = Queue(workspace.db_path)
    try:
        counts = queue.counts()
        last_run = queue.last_run()
        errors = queue.recent_errors(RECENT_ERRORS)
        pending = queue.pending_counts()
        conflicts = queue.conflicts()
    finally:
        queue.close()
    pid = daemon_pid(workspace)
    live = read_daemon_status(workspace) if pid is not None else None
    return {
        "workspace": str(workspace.root),
        "version": store.current_version(),
        "pending": pending,
        "trained": int(counts.get("trained", 0)),
        "rejected": int(counts.get("rejected", 0)),
        "retracted": int(counts.get("retracted", 0)),
        "conflicts": [{"label": c.label, "paths": c.paths} for c in conflicts],
        "last_run": _with_times(last_run.to_dict() if last_run else None),
        "next_trigger": (live or {}).get("next_trigger"),
        "paused": is_paused(workspace),
        "daemon": {"running": pid is not None, "pid": pid},
        "observer": (live or {}).get("observer"),
        "recent_errors": [_with_times(e) for e in errors],
        "latest_predictions": latest_predictions(Path(workspace.predictions_log)),
    }


def latest_predictions(path: Path, count: int = LATEST_PREDICTIONS) -> list[dict[str, Any]]:
    """The last ``count`` records of ``predictions.jsonl`` (read from its end; a torn
    or foreign line is passed over)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return []
    records = []
    for line in tail.splitlines()[-count:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def render_text(data: dict[str, Any]) -> str:
    """The human form of :func:`collect_status`."""
    daemon = data["daemon"]
    lines = [
        f"workspace: {data['workspace']}",
        "daemon:    "
        + (f"running (pid {daemon['pid']})" if daemon["running"] else "not running")
        + (", paused" if data["paused"] else ""),
        f"version:   {data['version']}",
    ]
    pending = data["pending"]
    total = sum(pending.values())
    per_label = ", ".join(f"{k} {v}" for k, v in sorted(pending.items()))
    lines.append(f"pending:   {total}" + (f" ({per_label})" if per_label else ""))
    lines.append(f"trained:   {data['trained']}, rejected: {data['rejected']}")
    for conflict in data.get("conflicts") or []:
        held = ", ".join(f"{path} ({label})" for path, label in conflict["paths"].items())
        lines.append(
            f"conflict:  one image under several labels: {held}; learned as {conflict['label']} "
            "(the latest drop): remove the wrong copy"
        )
    run = data["last_run"]
    if run:
        outcome = run.get("outcome") or "running"
        detail = f"version {run['version']}" if run.get("version") else run.get("reason") or ""
        loss = f", loss {run['loss']:.4g}" if isinstance(run.get("loss"), float) else ""
        took = f", {run['duration']:.1f} s" if run.get("duration") is not None else ""
        lines.append(f"last run:  {run.get('started_at')} {outcome} {detail}{loss}{took}")
    trigger = data.get("next_trigger")
    if trigger:
        due = trigger.get("due_in_seconds")
        lines.append(
            f"next:      {trigger.get('state')}" + (f" (in {due:.0f} s)" if due is not None else "")
        )
    observer = data.get("observer")
    if observer:
        lines.append(f"observer:  {json.dumps(observer, default=str)}")
    for record in data.get("latest_predictions") or []:
        lines.append(f"inbox:     {_prediction_text(record)}")
    for error in data["recent_errors"]:
        lines.append(
            f"error:     {error.get('time_at')} {error.get('path')}: {error.get('reason')}"
        )
    return "\n".join(lines)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _with_times(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """Add ISO-8601 forms beside the epoch seconds the database keeps."""
    if row is None:
        return None
    out = dict(row)
    for key in ("started", "finished", "time"):
        if isinstance(out.get(key), int | float):
            out[f"{key}_at"] = _iso(out[key])
    return out


def _prediction_text(record: dict[str, Any]) -> str:
    label = record.get("label")
    probability = (record.get("probabilities") or {}).get(label)
    said = f"{label} {probability:.2f}" if isinstance(probability, float) else str(label)
    if record.get("neither"):
        said = f"looks like neither (familiarity {record.get('familiarity')}; {said})"
    return f"{record.get('time')} {record.get('path')}: {said} (version {record.get('version')})"
