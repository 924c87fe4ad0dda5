"""What travels on the intake worker's queue: one small record per kind of event.

The watchdog handler, the reader threads and the daemon post these; only the intake
worker thread takes them and acts (``Intake._handle``).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple


class FileSeen(NamedTuple):
    """A file was created or changed (a hint: the stability wait decides); ``wrote`` is
    False for a change of metadata only (a chmod)."""

    path: str
    wrote: bool = True


class Closed(NamedTuple):
    """A file open for writing was closed (Linux only): it may be complete."""

    path: str


class DirCreated(NamedTuple):
    """A folder appeared: walk into it (its files may have no events of their own)."""

    path: str


class Gone(NamedTuple):
    """A file or folder was deleted."""

    path: str
    is_dir: bool


class Moved(NamedTuple):
    """A file or folder was renamed (sync tools write elsewhere and rename in)."""

    src: str
    dest: str
    is_dir: bool


class ReadResult(NamedTuple):
    """How reading a candidate ended: ``kind`` is ``ok`` (with ``digest`` and
    ``size``), ``undecodable`` or ``error`` (with ``reason``), ``denied`` or ``gone``."""

    kind: str
    digest: str | None = None
    size: int | None = None
    reason: str | None = None


class ReadDone(NamedTuple):
    """A reader thread finished with the candidate at ``rel``."""

    rel: str
    read: Any
    result: ReadResult


class Rescan(NamedTuple):
    """Sweep every folder now; ``done`` is set when the sweep is over."""

    done: threading.Event


class Wake(NamedTuple):
    """Nothing to do but look at the waiting files again."""


IntakeEvent = FileSeen | Closed | DirCreated | Gone | Moved | ReadDone | Rescan | Wake
