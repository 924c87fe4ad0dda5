"""Logging in and out: the one-time code from the printed URL, or the token from
``state/web-token`` pasted into the form; then a session cookie holds."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .forms import post_action, read_form, text_field
from .security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    TOKEN_FILE,
    current_session,
    same_secret,
    set_session_cookie,
)


def _state(request: Request):
    return request.app.state.web


def _logged_in(request: Request) -> Response:
    session = _state(request).sessions.create()
    response = RedirectResponse("/photos", status_code=303)
    set_session_cookie(response, session)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _login_form(request: Request, message: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = _state(request).templates.TemplateResponse(
        request,
        "login.html",
        {"nonce": nonce, "message": message, "token_file": f"state/{TOKEN_FILE}"},
        status_code=status,
        headers={"cache-control": "no-store"},
    )
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/login")
    return response


async def login_page(request: Request) -> Response:
    """``/login?code=…`` (the printed one-time URL) logs in; otherwise the token form."""
    code = request.query_params.get("code")
    if code is not None:
        if _state(request).codes.consume(code):
            return _logged_in(request)
        return _login_form(request, "That login link was already used or has expired.", status=403)
    return _login_form(request)


async def login_submit(request: Request) -> Response:
    """The token form; its CSRF token is the nonce cookie the form page set."""
    form = await read_form(request, max_fields=5)
    nonce = form.get("csrf")
    if not isinstance(nonce, str) or not same_secret(nonce, request.cookies.get(LOGIN_COOKIE, "")):
        return _login_form(request, "The form expired; try again.", status=403)
    token = form.get("token")
    if isinstance(token, str) and same_secret(token.strip(), _state(request).token):
        return _logged_in(request)
    return _login_form(request, "Wrong token.", status=403)


@post_action
async def logout(request: Request, form) -> Response:
    session = current_session(request)
    if session is not None:
        _state(request).sessions.drop(session.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/photos", status_code=303)


ROUTES = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]

__all__ = ["ROUTES", "text_field"]
