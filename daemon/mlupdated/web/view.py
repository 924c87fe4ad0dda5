"""What every page shows in its header, the live-update stamp, and small formatters."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import MlupdatedError
from ..service.control import daemon_pid, is_paused
from ..service.status import read_daemon_status
from ..service.store import ModelStore
from . import data
from .security import current_session

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..service.workspace import Workspace


def fmt_percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def fmt_time(value: float | str | None) -> str:
    """Epoch seconds or an ISO time as ``YYYY-MM-DD HH:MM`` (UTC)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def current_version(workspace: Workspace) -> int | None:
    try:
        return ModelStore(workspace).current_version()
    except MlupdatedError:
        return None


def overview(workspace: Workspace) -> dict[str, Any]:
    """The header's facts: version, daemon, pause, the daemon's live next trigger."""
    pid = daemon_pid(workspace)
    live = read_daemon_status(workspace) if pid is not None else None
    return {
        "version": current_version(workspace),
        "daemon_running": pid is not None,
        "paused": is_paused(workspace),
        "next_trigger": (live or {}).get("next_trigger"),
    }


def stamp(workspace: Workspace) -> str:
    """A short digest of everything the pages show that the daemon changes: the page
    reloads itself when it differs from the one it was rendered with."""
    facts = overview(workspace)
    facts.pop("next_trigger")
    with data.reading(workspace) as db:
        numbers = data.queue_numbers(db)
        last = data.runs(db, 1)
        facts.update(
            newest=data.newest_photo_id(db),
            counts=numbers["counts"],
            pending=numbers["pending"],
            last_drop=numbers["last_drop"],
            run=[(r.id, r.outcome) for r in last],
        )
    try:
        facts["manifest"] = workspace.manifest.stat().st_mtime_ns
    except OSError:
        facts["manifest"] = None
    return hashlib.sha256(repr(sorted(facts.items())).encode()).hexdigest()[:16]


def page_context(request: Request, page: str, **extra: Any) -> dict[str, Any]:
    """The context every page template gets."""
    workspace = request.app.state.web.workspace
    session = current_session(request)
    return {
        "page": page,
        "csrf": session.csrf if session else "",
        "stamp": stamp(workspace),
        **overview(workspace),
        **extra,
    }
