"""The web page's application: Starlette routes, Jinja2 templates, the guard, the
error pages. :func:`create_app` builds it for one workspace; ``mlupdated web`` serves
it with uvicorn (``commands/web.py``)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..errors import MlupdatedError
from ..service.workspace import Workspace
from . import routes_auth, routes_corrections, routes_models, routes_photos
from .files import Labels, WebError
from .security import MAX_BODY, BodyTooLarge, Guard, LoginCodes, Sessions, ensure_token
from .view import fmt_percent, fmt_time

STATIC_TYPES = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
_log = logging.getLogger("mlupdated.web")


@dataclass
class WebState:
    """What every route needs: the workspace, its labels and the login machinery."""

    workspace: Workspace
    token: str
    templates: Jinja2Templates
    labels: Labels
    sessions: Sessions = field(default_factory=Sessions)
    codes: LoginCodes = field(default_factory=LoginCodes)
    static: dict[str, tuple[bytes, str]] = field(default_factory=dict)


def web_state(request: Request) -> WebState:
    return request.app.state.web


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__) / "static"
    out = {}
    for name in STATIC_TYPES:
        data = (folder / name).read_bytes()
        out[name] = (data, hashlib.sha256(data).hexdigest()[:16])
    return out


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = fmt_percent
    env.filters["when"] = fmt_time
    return Jinja2Templates(env=env)


async def static_file(request: Request) -> Response:
    """The package's own CSS and JS (only these names; nothing else is served)."""
    found = web_state(request).static.get(request.path_params["name"])
    if found is None:
        raise HTTPException(404, "no such file")
    data, etag = found
    return Response(
        data,
        media_type=STATIC_TYPES[request.path_params["name"]],
        headers={"etag": f'"{etag}"', "cache-control": "no-cache"},
    )


def _error_page(request: Request, status: int, message: str) -> Response:
    accept = request.headers.get("accept", "")
    if "text/html" in accept and hasattr(request.app.state, "web"):
        templates = web_state(request).templates
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": status, "message": message},
            status_code=status,
            headers={"cache-control": "no-store"},
        )
    return PlainTextResponse(f"{message}\n", status_code=status)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "error"
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such page"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed here"
    return _error_page(request, exc.status_code, detail)


async def on_web_error(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, WebError) else 409
    return _error_page(request, status, str(exc))


async def on_too_large(request: Request, exc: Exception) -> Response:
    return _error_page(request, 413, f"refused: the request body is over {MAX_BODY} bytes")


async def on_crash(request: Request, exc: Exception) -> Response:
    _log.error("request failed: %s %s: %r", request.method, request.url.path, exc)
    return PlainTextResponse("internal error (see the mlupdated web log)\n", status_code=500)


def routes() -> list[Route]:
    return [
        *routes_auth.ROUTES,
        *routes_photos.ROUTES,
        *routes_corrections.ROUTES,
        *routes_models.ROUTES,
        Route("/static/{name}", static_file, methods=["GET", "HEAD"]),
    ]


def create_app(workspace: Workspace, *, hosts: frozenset[str]) -> Starlette:
    """The application for ``workspace``, answering only to the ``Host`` names ``hosts``."""
    state = WebState(
        workspace=workspace,
        token=ensure_token(workspace.state),
        templates=_templates(),
        labels=Labels(workspace),
        static=_static_files(),
    )
    handlers: dict[Any, Any] = {
        HTTPException: on_http_error,
        MlupdatedError: on_web_error,
        BodyTooLarge: on_too_large,
        Exception: on_crash,
    }
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(Guard, hosts=hosts, sessions=state.sessions)],
        exception_handlers=handlers,
    )
    app.state.web = state
    return app
