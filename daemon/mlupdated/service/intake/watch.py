"""The watchdog side of intake: an observer whose handler only hands paths over.

Native events (inotify, FSEvents) or polling (network shares, sync folders). When the
kernel's inotify limits are used up (ENOSPC: watches, EMFILE/ENFILE: instances) the
caller falls back to polling. watchdog only *logs* an inotify queue overflow, so
``OverflowWatch`` turns that log record into a rescan request.
"""

from __future__ import annotations

import errno
import logging
import os
import queue as queue_mod
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from .events import Closed, DirCreated, FileSeen, Gone, IntakeEvent, Moved

LIMIT_ERRNOS = {errno.ENOSPC, errno.EMFILE, errno.ENFILE}


class EventHandler(FileSystemEventHandler):
    """Only hands paths over; never touches the file system or the database.

    ``watched`` is the folder the observer watches (a top folder resolved, when it is a
    symbolic link) and ``shown`` the workspace path it stands for: event paths are
    handed over as paths inside the workspace.
    """

    def __init__(
        self, events: queue_mod.Queue[IntakeEvent], *, watched: str = "", shown: str = ""
    ) -> None:
        self._events = events
        self._watched = watched
        self._shown = shown

    def _path(self, raw: bytes | str) -> str:
        path = os.fsdecode(raw)
        watched = self._watched
        if watched and watched != self._shown:
            if path == watched or path.startswith(watched + os.sep):
                return self._shown + path[len(watched) :]
        return path

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            kind = event.event_type
            src = self._path(event.src_path)
            if kind == "moved":
                self._events.put(Moved(src, self._path(event.dest_path), event.is_directory))
            elif kind == "deleted":
                self._events.put(Gone(src, event.is_directory))
            elif kind == "closed":  # closed after writing (inotify's IN_CLOSE_WRITE)
                if not event.is_directory:
                    self._events.put(Closed(src))
            # "attrib": a chmod that makes a refused file readable is worth a look.
            elif kind in ("created", "modified", "attrib"):
                if event.is_directory:
                    if kind == "created":
                        self._events.put(DirCreated(src))
                else:
                    self._events.put(FileSeen(src, wrote=kind != "attrib"))
        except Exception:  # an exception here would kill the observer thread
            pass


class OverflowWatch(logging.Handler):
    """watchdog only logs an inotify queue overflow; turn that into a rescan request."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__(level=logging.WARNING)
        self._flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._flag.set()


def make_observer(kind: str, *, polling_interval: float) -> Any:
    """A fresh, unstarted observer of ``kind`` (``native`` or ``polling``)."""
    if kind == "polling":
        from watchdog.observers.polling import PollingObserverVFS

        # lstat, not stat: the plain polling observer descends into symlinked folders,
        # which walks out of the workspace (or loops through it forever).
        return PollingObserverVFS(os.lstat, os.scandir, polling_interval=polling_interval)
    from watchdog.observers import Observer

    return Observer()


def start_observer(
    kind: str,
    roots: list[Path],
    events: queue_mod.Queue[IntakeEvent],
    *,
    polling_interval: float,
) -> Any:
    """Watch each existing root recursively; raises the OSError of a failed start.

    A root that is a symbolic link (``inbox/`` pointing at a sync folder, say) is watched
    at its resolved path: a watch on the link itself sees nothing of what happens inside
    (watchdog does not follow it), and events are reported under the root again.
    """
    observer = make_observer(kind, polling_interval=polling_interval)
    for root in roots:
        if root.is_dir():
            resolved = os.path.realpath(root)
            handler = EventHandler(events, watched=resolved, shown=str(root))
            observer.schedule(handler, resolved, recursive=True)
    try:
        observer.start()
    except BaseException:
        try:
            observer.stop()
        except Exception:
            pass
        raise
    return observer


def resolved_roots(roots: list[Path]) -> list[str]:
    """Where each root leads now (a re-pointed link needs a new watch)."""
    return [os.path.realpath(root) for root in roots]


def observer_alive(observer: Any) -> bool:
    """True when the observer thread and every one of its watch threads run."""
    if observer is None or not observer.is_alive():
        return False
    return all(emitter.is_alive() for emitter in list(observer.emitters))
