"""The models page (version history, the metrics plot) and the daemon's controls:
rollback, update-now, pause and resume, through the same code the CLI runs; plus the
small JSON state the page polls to update itself."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..service.control import request_update, set_paused
from ..service.store import ModelStore, VersionEntry
from ..service.workspace import Workspace
from . import data
from .forms import post_action, text_field
from .plot import Point, metrics_svg
from .view import page_context, stamp

MAX_VERSION_DIGITS = 9


def _gate_accuracy(entry: VersionEntry) -> float | None:
    gate = entry.gate or {}
    candidate = gate.get("candidate") or {}
    value = candidate.get("accuracy")
    return float(value) if isinstance(value, int | float) else None


def _entries(workspace: Workspace) -> tuple[list[VersionEntry], list[dict[str, Any]]]:
    store = ModelStore(workspace)
    manifest = store.files.read_manifest()
    entries = sorted(manifest.versions, key=lambda e: e.version or 0, reverse=True)
    return entries, list(reversed(manifest.history))[:20]


async def models_page(request: Request) -> Response:
    state = request.app.state.web
    entries, history = _entries(state.workspace)
    with data.reading(state.workspace) as db:
        runs = data.runs(db, 10)
    context = page_context(request, "models", entries=entries, history=history, runs=runs)
    context["gate_accuracy"] = _gate_accuracy
    return state.templates.TemplateResponse(
        request, "models.html", context, headers={"cache-control": "no-store"}
    )


async def plot(request: Request) -> Response:
    entries, _ = _entries(request.app.state.web.workspace)
    points = [
        Point(
            version=int(e.version),
            accuracy=_gate_accuracy(e),
            loss=float(e.loss) if isinstance(e.loss, int | float) else None,
        )
        for e in sorted(entries, key=lambda e: e.version)
    ]
    return Response(
        metrics_svg(points), media_type="image/svg+xml", headers={"cache-control": "no-store"}
    )


def _back() -> RedirectResponse:
    return RedirectResponse("/models", status_code=303)


@post_action
async def rollback(request: Request, form: FormData) -> Response:
    """``mlupdated rollback [--to VERSION]``: the store's own rollback."""
    text = text_field(form, "version", limit=MAX_VERSION_DIGITS + 1).strip()
    if text and not (text.isdigit() and len(text) <= MAX_VERSION_DIGITS):
        raise HTTPException(400, "refused: the version must be a whole number")
    ModelStore(request.app.state.web.workspace).rollback(int(text) if text else None)
    return _back()


@post_action
async def update_now(request: Request, form: FormData) -> Response:
    request_update(request.app.state.web.workspace)
    return _back()


@post_action
async def pause(request: Request, form: FormData) -> Response:
    set_paused(request.app.state.web.workspace, True)
    return _back()


@post_action
async def resume(request: Request, form: FormData) -> Response:
    set_paused(request.app.state.web.workspace, False)
    return _back()


async def api_state(request: Request) -> Response:
    """What the page's script polls: the stamp (reload when it changes) and the version."""
    workspace = request.app.state.web.workspace
    return JSONResponse(
        {"stamp": stamp(workspace), "version": ModelStore(workspace).current_version()},
        headers={"cache-control": "no-store"},
    )


ROUTES = [
    Route("/models", models_page, methods=["GET"]),
    Route("/models/plot.svg", plot, methods=["GET"]),
    Route("/models/rollback", rollback, methods=["POST"]),
    Route("/control/update-now", update_now, methods=["POST"]),
    Route("/control/pause", pause, methods=["POST"]),
    Route("/control/resume", resume, methods=["POST"]),
    Route("/api/state", api_state, methods=["GET"]),
]
