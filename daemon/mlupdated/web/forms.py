"""Reading a POST: the size limit and the CSRF check every state-changing route makes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .security import CSRF_FIELD, CSRF_HEADER, MAX_BODY, BodyTooLarge, current_session, same_secret

MAX_FIELDS = 20

Handler = Callable[[Request, FormData], Awaitable[Response]]


async def read_form(request: Request, *, max_fields: int = MAX_FIELDS) -> FormData:
    """The request's form (no files), refused with 413 or 400 when too big or malformed."""
    try:
        return await request.form(max_files=0, max_fields=max_fields, max_part_size=MAX_BODY)
    except BodyTooLarge:
        raise HTTPException(413, f"refused: the request body is over {MAX_BODY} bytes") from None
    except HTTPException:
        raise
    except Exception as exc:  # a malformed body of any kind: the client's fault
        raise HTTPException(400, f"refused: a malformed form ({exc})") from None


async def checked_form(request: Request) -> FormData:
    """The request's form, refused (413/400/403) unless small and carrying the session's
    CSRF token (form field ``csrf`` or header ``X-CSRF-Token``)."""
    form = await read_form(request)
    session = current_session(request)
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if session is None or not isinstance(given, str) or not same_secret(given, session.csrf):
        raise HTTPException(403, "refused: missing or wrong CSRF token (reload the page)")
    return form


def post_action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST route: it runs only with a checked form."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        form = await checked_form(request)
        return await handler(request, form)

    endpoint.csrf_checked = True  # type: ignore[attr-defined]
    return endpoint


def text_field(form: FormData, name: str, *, limit: int = 200) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise HTTPException(400, f"refused: field {name!r} is not short text")
    return value
