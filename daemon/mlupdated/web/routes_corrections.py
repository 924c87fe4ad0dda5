"""The corrections page: pending, trained and rejected corrections with their reasons,
and what the next update waits for."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ConfigError
from ..service.config import load_config
from ..service.queue.db import PENDING, REJECTED, TRAINED
from . import data
from .view import page_context


def waiting_for(workspace, numbers: dict, live: dict | None) -> dict:
    """The update rules and where the queue stands against them."""
    try:
        rules = load_config(workspace.config_path).update
        config_error = None
    except ConfigError as exc:
        rules, config_error = None, str(exc)
    now = time.time()
    pending = sum(numbers["pending"].values())
    out = {
        "pending": pending,
        "config_error": config_error,
        "min_batch": rules.min_batch if rules else None,
        "quiet_seconds": rules.quiet_seconds if rules else None,
        "max_wait_seconds": rules.max_wait_seconds if rules else None,
        "cron": rules.cron if rules else None,
        "since_drop": now - numbers["last_drop"] if numbers["last_drop"] else None,
        "oldest_age": now - numbers["oldest"] if numbers["oldest"] else None,
        "live": live,
    }
    return out


async def corrections_page(request: Request) -> Response:
    state = request.app.state.web
    with data.reading(state.workspace) as db:
        groups = data.corrections_by_state(db)
        numbers = data.queue_numbers(db)
        errors = data.recent_errors(db)
    context = page_context(request, "corrections")
    context.update(
        groups=[
            ("Pending", PENDING, groups[PENDING]),
            ("Trained", TRAINED, groups[TRAINED]),
            ("Rejected", REJECTED, groups[REJECTED]),
        ],
        counts=numbers["counts"],
        waiting=waiting_for(state.workspace, numbers, context["next_trigger"]),
        errors=errors,
    )
    return state.templates.TemplateResponse(
        request, "corrections.html", context, headers={"cache-control": "no-store"}
    )


ROUTES = [Route("/corrections", corrections_page, methods=["GET"])]
