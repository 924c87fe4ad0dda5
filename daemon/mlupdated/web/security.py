"""The web page's guards: the login token, one-time login codes, sessions, CSRF, the
``Host`` check, body limits and the response headers.

The page is the project's first network surface, so every request passes one ASGI
middleware (:class:`Guard`) before any route sees it:

- a ``Host`` header that is not one of ours is refused (DNS rebinding);
- a body over :data:`MAX_BODY` bytes or a query over :data:`MAX_QUERY` is refused;
- without a session cookie only the login page and the static files answer;
- every response carries a strict Content-Security-Policy and friends.

Every POST route is wrapped by :func:`~.forms.checked_form`, which refuses a request
whose CSRF token is not the session's. The login token lives in ``state/web-token``
(mode 0600); the printed login URL carries a one-time code instead, so a URL left in a
browser's history opens nothing.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import StoreError

TOKEN_FILE = "web-token"
TOKEN_MODE = 0o600
SESSION_COOKIE = "mlupdated_session"
LOGIN_COOKIE = "mlupdated_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 16 * 1024
MAX_QUERY = 2048
MAX_SESSIONS = 32
LOGIN_CODE_SECONDS = 600.0
PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/static/",)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


# --- the token and the one-time codes -------------------------------------------------


def token_path(state_dir: Path) -> Path:
    """Where the login token lives."""
    return Path(state_dir) / TOKEN_FILE


def ensure_token(state_dir: Path) -> str:
    """The login token of this workspace, made (mode 0600) on first use.

    The file is created with ``O_EXCL`` at mode 0600, so it is never readable by others,
    not even for a moment; an existing one with looser permissions is tightened.
    """
    path = token_path(state_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, TOKEN_MODE)
    except FileExistsError:
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, TOKEN_MODE)
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read the web token: {exc}", path=path) from exc
        if len(text) < 32:
            raise StoreError(
                "the web token is too short; delete the file to make a new one", path=path
            ) from None
        return text
    except OSError as exc:
        raise StoreError(f"cannot create the web token: {exc.strerror}", path=path) from exc
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret taken from a request."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class LoginCodes:
    """One-time login codes: each opens one session, once, within ten minutes."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._codes: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def issue(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = self._clock() + LOGIN_CODE_SECONDS
        return code

    def consume(self, code: str | None) -> bool:
        """True (once) for a code issued and not used or expired."""
        if not code:
            return False
        with self._lock:
            for known in list(self._codes):
                if hmac.compare_digest(known.encode(), code.encode("utf-8", "replace")):
                    expires = self._codes.pop(known)
                    return self._clock() < expires
        return False


# --- sessions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One logged-in browser: the cookie's id and its CSRF token."""

    id: str
    csrf: str
    created: float = field(default_factory=time.time)


class Sessions:
    """Sessions in memory (a restart logs everyone out; the new login URL is printed)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        with self._lock:
            self._items[session.id] = session
            while len(self._items) > MAX_SESSIONS:
                self._items.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            for known, session in self._items.items():
                if hmac.compare_digest(known.encode(), session_id.encode("utf-8", "replace")):
                    return session
        return None

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._items.pop(session_id, None)


def set_session_cookie(response: Response, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE, session.id, httponly=True, samesite="strict", path="/", secure=False
    )


def current_session(request: Request) -> Session | None:
    """The session the guard found for this request (None on public pages)."""
    return request.scope.get("mlupdated.session")


# --- hosts ----------------------------------------------------------------------------


def allowed_hosts(bind_host: str, port: int, *, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values we answer: loopback names, the bound address and any
    ``extra`` names (the machine's own names when remote access is allowed), each with
    and without the port."""
    names = {*LOOPBACK_NAMES, *extra}
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(
            f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host
        )
    out = set()
    for name in names:
        if name == "::1":
            continue
        out.add(name.lower())
        out.add(f"{name.lower()}:{port}")
    return frozenset(out)


# --- the middleware -------------------------------------------------------------------


class Guard:
    """The ASGI middleware every request passes (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], sessions: Sessions) -> None:
        self.app = app
        self.hosts = hosts
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, _limited(receive), send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return _refuse(
                400, "refused: unknown Host header (open the page by the address it printed)"
            )
        if len(scope.get("query_string", b"")) > MAX_QUERY:
            return _refuse(414, "refused: the query string is too long")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _refuse(400, "refused: a malformed Content-Length")
            if int(length) > MAX_BODY:
                return _refuse(413, f"refused: the request body is over {MAX_BODY} bytes")
        origin = headers.get("origin")
        if origin and scope["method"] not in ("GET", "HEAD"):
            if origin.split("://", 1)[-1].lower() not in self.hosts:
                return _refuse(403, "refused: the request came from another site (Origin)")
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        cookie = Request(scope).cookies.get(SESSION_COOKIE)
        session = self.sessions.get(cookie)
        if session is None:
            if scope["method"] in ("GET", "HEAD") and not path.startswith("/api/"):
                return RedirectResponse("/login", status_code=303)
            return _refuse(401, "refused: not logged in (open the login URL mlupdated web printed)")
        scope["mlupdated.session"] = session
        return None


def _refuse(status: int, text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers={"cache-control": "no-store"})


class BodyTooLarge(Exception):
    """A request body grew past :data:`MAX_BODY` while it was read."""


def _limited(receive: Receive) -> Receive:
    """``receive`` that stops a body (chunked, or lying about its length) at MAX_BODY."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise BodyTooLarge
        return message

    return wrapped
