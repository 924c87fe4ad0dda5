"""The files the page touches: the photo behind an id, the correction copies, the labels.

No request parameter ever becomes a path. A photo's path comes from the database (the
daemon wrote it) and must lie inside ``inbox/`` (or ``corrections/``) once resolved; a
correction is a *copy* of that photo into ``corrections/<Label>/`` under a name made
from its content (sha256 prefix + the original suffix), written through a temporary
name intake ignores and renamed into place. Labels come from the current model.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import MlupdatedError
from ..fsutil import atomic_write
from ..service.intake.filters import inside
from ..service.queue.db import PENDING, RETRACTED
from ..service.workspace import Workspace, is_folder_name, model_labels

NAME_DIGITS = 16
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
COPY_CHUNK = 1 << 20


class WebError(MlupdatedError):
    """A request the page refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- labels ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A class label of the current model and the key that files it."""

    name: str
    key: str


class Labels:
    """The current model's labels, re-read only when ``current.mlmodel`` changes."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._labels: list[Label] = []

    def get(self) -> list[Label]:
        path = Path(self._ws.current_model)
        try:
            info = path.stat()
        except OSError as exc:
            raise WebError(f"no current model: {exc.strerror}", status=503) from exc
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._labels = with_keys(model_labels(path))
                self._stamp = stamp
            return list(self._labels)

    def names(self) -> list[str]:
        return [label.name for label in self.get()]


def with_keys(names: list[str]) -> list[Label]:
    """Each label with its key: its first letter, else the first free digit."""
    used: set[str] = set()
    out = []
    digits = iter("123456789")
    for name in names:
        first = name[:1].lower()
        key = first if first.isalpha() and first not in used and first != "u" else ""
        if not key:
            key = next((d for d in digits if d not in used), "")
        used.add(key)
        out.append(Label(name, key))
    return out


# --- the photo behind an id -------------------------------------------------------------


def workspace_file(workspace: Workspace, relative: str, *, under: Path) -> Path:
    """The file a database row names, refused unless it is a regular file inside ``under``."""
    candidate = Path(workspace.root) / relative
    if not inside(candidate, under) or not inside(candidate, workspace.root):
        raise WebError("refused: that file is outside the workspace's folders", status=403)
    try:
        info = candidate.lstat()
    except FileNotFoundError:
        raise WebError(f"{relative} is no longer there (deleted or moved)", status=404) from None
    except OSError as exc:
        raise WebError(f"{relative}: {exc.strerror}", status=404) from exc
    if not stat.S_ISREG(info.st_mode):
        raise WebError(f"{relative} is not a regular file", status=404)
    return candidate


def correction_name(sha256: str, source: str) -> str:
    """The content-derived name of a correction copy: sha256 prefix + original suffix."""
    suffix = os.path.splitext(source)[1]
    return sha256[:NAME_DIGITS] + (suffix.lower() if _SUFFIX.match(suffix) else "")


def open_regular(path: Path) -> BinaryIO:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WebError(f"{path.name} is not a regular file", status=404)
    return os.fdopen(fd, "rb")


def file_correction(
    workspace: Workspace, *, relative: str, sha256: str, label: str, labels: list[str]
) -> Path:
    """Copy the inbox photo ``relative`` into ``corrections/<label>/``; return the copy.

    The copy's bytes are checked against ``sha256`` (what the model saw) as they are
    written; a photo changed since refuses. The copies of this content under the other
    labels are removed afterwards: the latest label wins, as with a file moved by hand.
    """
    if label not in labels:
        raise WebError(f"refused: {label!r} is not a label of the current model", status=400)
    if not is_folder_name(label):  # the model's own label: still never a path
        raise WebError(f"refused: the label {label!r} cannot name a folder", status=400)
    source = workspace_file(workspace, relative, under=Path(workspace.inbox))
    name = correction_name(sha256, relative)
    folder = Path(workspace.corrections) / label
    target = folder / name
    if not target.is_file():
        try:
            folder.mkdir(mode=0o755, exist_ok=True)
        except OSError as exc:
            raise WebError(
                f"cannot create corrections/{label}: {exc.strerror}", status=500
            ) from exc
        try:
            handle = open_regular(source)
        except FileNotFoundError:
            raise WebError(
                f"{relative} is no longer there (deleted or moved)", status=404
            ) from None

        def copy(out: BinaryIO) -> None:
            digest = hashlib.sha256()
            while chunk := handle.read(COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise WebError(f"{relative} changed since it was classified", status=409)

        with handle:
            atomic_write(target, copy)
    for other in labels:
        if other != label:
            _remove_copy(Path(workspace.corrections) / other / name)
    return target


def web_copies(
    workspace: Workspace, *, relative: str, sha256: str, labels: list[str]
) -> list[Path]:
    """The copies this page made of a content (one per label folder that holds one)."""
    name = correction_name(sha256, relative)
    found = []
    for label in labels:
        path = Path(workspace.corrections) / label / name
        if path.is_file() and not path.is_symlink():
            found.append(path)
    return found


def undo_correction(
    workspace: Workspace,
    *,
    relative: str,
    sha256: str,
    labels: list[str],
    state: str | None,
    version: int | None,
) -> list[Path]:
    """Remove the page's copies of a content while the queue still says pending (or the
    daemon has not queued them yet); return what was removed."""
    copies = web_copies(workspace, relative=relative, sha256=sha256, labels=labels)
    if not copies:
        raise WebError("nothing to undo: no correction of this photo was filed here", status=409)
    if state not in (None, PENDING, RETRACTED):
        said = f"trained into version {version}" if version else state
        raise WebError(f"cannot undo: the correction is already {said}", status=409)
    for path in copies:
        _remove_copy(path)
    return copies


def _remove_copy(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_file():
            return
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise WebError(f"cannot remove {path.name}: {exc.strerror}", status=500) from exc


__all__ = [
    "Label",
    "Labels",
    "WebError",
    "correction_name",
    "open_regular",
    "file_correction",
    "undo_correction",
    "web_copies",
    "with_keys",
    "workspace_file",
]
