"""The photos page: the latest inbox predictions as thumbnails, filters, and the
one-click (or one-key) correction with its undo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import data
from .files import file_correction, undo_correction, web_copies, workspace_file
from .forms import post_action, text_field
from .thumbs import thumbnail
from .view import page_context

LOW_CONFIDENCE = 0.75
SHOWN = 200


@dataclass(frozen=True)
class Filters:
    """The photos page's filters, checked against the current labels."""

    label: str = ""
    low: bool = False
    unreviewed: bool = False

    def query(self) -> str:
        params = {
            "label": self.label,
            "low": "1" if self.low else "",
            "unreviewed": "1" if self.unreviewed else "",
        }
        text = urlencode({k: v for k, v in params.items() if v})
        return f"?{text}" if text else ""


def _filters(values: dict[str, Any], labels: list[str]) -> Filters:
    label = values.get("label") or ""
    if not isinstance(label, str) or (label and label not in labels):
        raise HTTPException(400, "refused: that label filter is not a label of the current model")
    return Filters(
        label=label, low=values.get("low") == "1", unreviewed=values.get("unreviewed") == "1"
    )


def _state(request: Request):
    return request.app.state.web


def _photo_id(request: Request) -> int:
    return int(request.path_params["photo_id"])


async def photos_page(request: Request) -> Response:
    state = _state(request)
    labels = state.labels.get()
    names = [label.name for label in labels]
    filters = _filters(dict(request.query_params), names)
    with data.reading(state.workspace) as db:
        photos = data.recent_photos(db, state.workspace)
    total = len(photos)
    if filters.label:
        photos = [p for p in photos if p.label == filters.label]
    if filters.low:
        photos = [p for p in photos if p.probability is None or p.probability < LOW_CONFIDENCE]
    if filters.unreviewed:
        photos = [p for p in photos if p.corrected_as is None]
    photos = photos[:SHOWN]
    filed = {}
    for photo in photos:
        copies = web_copies(state.workspace, relative=photo.path, sha256=photo.sha256, labels=names)
        if copies:
            filed[photo.id] = copies[0].parent.name
    context = page_context(
        request,
        "photos",
        photos=photos,
        total=total,
        labels=labels,
        filters=filters,
        filed=filed,
        low_confidence=LOW_CONFIDENCE,
    )
    return state.templates.TemplateResponse(
        request, "photos.html", context, headers={"cache-control": "no-store"}
    )


def _photo_or_404(request: Request) -> data.Photo:
    with data.reading(_state(request).workspace) as db:
        photo = data.photo_by_id(db, _photo_id(request))
    if photo is None:
        raise HTTPException(404, f"no photo with id {request.path_params['photo_id']}")
    return photo


async def photo_thumb(request: Request) -> Response:
    photo = _photo_or_404(request)
    workspace = _state(request).workspace
    source = workspace_file(workspace, photo.path, under=Path(workspace.inbox))
    return Response(
        await run_in_threadpool(thumbnail, source, photo.sha256),
        media_type="image/jpeg",
        headers={"cache-control": "private, max-age=3600"},
    )


async def correction_thumb(request: Request) -> Response:
    workspace = _state(request).workspace
    with data.reading(workspace) as db:
        found = data.correction_path(db, int(request.path_params["correction_id"]))
    if found is None:
        raise HTTPException(404, f"no correction with id {request.path_params['correction_id']}")
    path, sha256 = found
    source = workspace_file(workspace, path, under=Path(workspace.corrections))
    return Response(
        await run_in_threadpool(thumbnail, source, sha256),
        media_type="image/jpeg",
        headers={"cache-control": "private, max-age=3600"},
    )


def _back(form: FormData, names: list[str], photo_id: int) -> RedirectResponse:
    wanted = {
        "label": form.get("label_filter") or "",
        "low": form.get("low") or "",
        "unreviewed": form.get("unreviewed") or "",
    }
    try:
        filters = _filters(wanted, names)
    except HTTPException:
        filters = Filters()
    return RedirectResponse(f"/photos{filters.query()}#p{photo_id}", status_code=303)


@post_action
async def correct(request: Request, form: FormData) -> Response:
    """File a correction: copy the photo into ``corrections/<label>/``."""
    photo = _photo_or_404(request)
    state = _state(request)
    names = state.labels.names()
    label = text_field(form, "label")
    if not label:
        raise HTTPException(400, "refused: no label given")
    await run_in_threadpool(
        file_correction,
        state.workspace,
        relative=photo.path,
        sha256=photo.sha256,
        label=label,
        labels=names,
    )
    return _back(form, names, photo.id)


@post_action
async def undo(request: Request, form: FormData) -> Response:
    """Take a correction back while the queue still says it is pending."""
    photo = _photo_or_404(request)
    state = _state(request)
    names = state.labels.names()
    with data.reading(state.workspace) as db:
        queued = data.correction_for(db, photo.sha256)
    undo_correction(
        state.workspace,
        relative=photo.path,
        sha256=photo.sha256,
        labels=names,
        state=queued.state if queued else None,
        version=queued.version if queued else None,
    )
    return _back(form, names, photo.id)


ROUTES = [
    Route("/photos", photos_page, methods=["GET"]),
    Route("/photos/{photo_id:int}/thumb", photo_thumb, methods=["GET"]),
    Route("/photos/{photo_id:int}/correct", correct, methods=["POST"]),
    Route("/photos/{photo_id:int}/undo", undo, methods=["POST"]),
    Route("/corrections/{correction_id:int}/thumb", correction_thumb, methods=["GET"]),
]
