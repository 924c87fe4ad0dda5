"""What intake does with a path: wait until the file is complete, then take it.

``Arrivals`` holds intake's decisions and runs on its worker thread only (see
``intake.py`` for the threads). It owns a ``StabilityWait`` (``stability.py``: the
wait and the reader threads), which calls back when a file is complete, the model's
``Labels`` (``labels.py``) and the ``Sources`` (``sources.py``: the mount-flap rule).
Its decisions: queueing a complete correction or handing an inbox photo over, moves
(relabel), removals (retract, unless the source is unavailable), the full rescan.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import MlupdatedError
from ..config import Config
from ..queue import CorrectionChange, Queue
from ..workspace import Workspace
from .events import Closed, DirCreated, FileSeen, Gone, IntakeEvent, Moved, ReadDone
from .filters import file_kind, file_sig, ignored_relpath, show_path
from .labels import Labels, log_change
from .sources import TOPS, Sources, via_symlinked_folder, walk, watched
from .stability import StabilityWait


class Arrivals:
    """Intake's decisions about files (worker thread only; see the module docstring)."""

    def __init__(
        self,
        workspace: Workspace,
        config: Config,
        queue: Queue,
        *,
        on_correction: Callable[[CorrectionChange], None],
        on_inbox: Callable[[Path, str], None],
        log: Any,
        stopping: threading.Event,
        post: Callable[[ReadDone], None],
    ) -> None:
        self.workspace = workspace
        self.queue = queue
        self._log = log
        self.stability = StabilityWait(
            workspace,
            config,
            queue,
            log=log,
            stopping=stopping,
            post=post,
            take=self._take,
            gone=lambda rel: self.gone(rel, is_dir=False),
        )
        self._on_correction = on_correction
        self._on_inbox = on_inbox
        self._labels = Labels(log=log)
        self._sources = Sources(workspace.root, log=log)

    @property
    def config(self) -> Config:
        """The config in force (a reload replaces it here and in the stability wait)."""
        return self.stability.config

    @config.setter
    def config(self, config: Config) -> None:
        self.stability.config = config

    def unavailable(self) -> list[str]:
        """Sources (folders, relative) that are missing right now."""
        return self._sources.unavailable()

    def handle(self, item: IntakeEvent) -> None:
        """Act on an event about a path, or a reader's outcome."""
        if isinstance(item, FileSeen):
            self.changed(item.path, wrote=item.wrote)
        elif isinstance(item, Closed):
            self.closed(item.path)
        elif isinstance(item, DirCreated):
            self.walk_into(item.path)
        elif isinstance(item, Gone):
            self.gone(self.rel(item.path), is_dir=item.is_dir)
        elif isinstance(item, Moved):
            self.moved(item.src, item.dest, is_dir=item.is_dir)
        elif isinstance(item, ReadDone):
            self.stability.read_done(item.rel, item.read, item.result)
        else:
            raise TypeError(f"not an intake event: {item!r}")

    # --- paths ------------------------------------------------------------------------

    def rel(self, path: str) -> str:
        """``path`` relative to the workspace root, forward slashes."""
        return self.workspace.relative(path)

    def _ignored(self, rel: str) -> bool:
        return ignored_relpath(rel, self.config.intake.ignore)

    def changed(self, path: str, *, wrote: bool) -> None:
        """An event said ``path`` changed; a write means it is not known complete."""
        if wrote:
            self.stability.closes.clear(self.rel(path))
        self.consider(path)

    def closed(self, path: str) -> None:
        """An event said ``path`` was closed after writing: it may be taken without the
        rest of its stability wait (if it decodes)."""
        self.stability.closes.mark(self.rel(path))
        self.consider(path)

    def consider(self, path: str, *, replaces: str | None = None) -> None:
        """A hint that ``path`` may be new or changed: start (or hurry) its stability wait."""
        rel = self.rel(path)
        if not watched(rel) or self._ignored(rel) or via_symlinked_folder(self.workspace.root, rel):
            if replaces:
                self.gone(replaces, is_dir=False)
            return
        self.stability.wait_for(rel, replaces=replaces)

    def walk_into(self, directory: str) -> None:
        """A folder appeared (created or moved in): consider everything below it."""
        for path in walk(Path(directory), self.config.intake.ignore):
            self.consider(str(path))

    # --- removals and moves -----------------------------------------------------------

    def gone(self, rel: str, *, is_dir: bool) -> None:
        """``rel`` (a file, or a folder with ``is_dir``) was removed: retract what it held,
        unless its source is unavailable (a mount flap) or a new file took its name."""
        if not watched(rel) and rel not in TOPS:
            return
        if is_dir or rel in TOPS:
            prefix = rel.rstrip("/") + "/"
            paths = set(self.queue.correction_paths(prefix)) | set(self.queue.seen_paths(prefix))
            paths |= self.stability.waiting_under(prefix)
            for path in sorted(paths):
                self.gone(path, is_dir=False)
            return
        if os.path.lexists(self.stability.path_of(rel)):
            self.consider(str(self.stability.path_of(rel)))  # replaced by a new file of that name
            return
        self.stability.forget(rel)
        if not self._sources.source_available(rel):
            return
        if rel.startswith("corrections/"):
            learned = self.queue.learned_only_at(rel)
            if self.queue.retract_path(rel):
                self._log.info(
                    f"correction retracted: {show_path(rel)} was removed before training",
                    path=rel,
                )
            elif learned is not None:
                self._log.warning(
                    f"trained correction deleted: {show_path(rel)} was learned by model "
                    f"version {learned.version}, which keeps it; roll back to an earlier "
                    "version to undo that",
                    path=rel,
                    id=learned.id,
                    version=learned.version,
                )
        self.queue.forget_seen(rel)

    def moved(self, src: str, dest: str, *, is_dir: bool) -> None:
        """A rename inside or into the watched folders: relabel, or take the new path."""
        src_rel, dest_rel = self.rel(src), self.rel(dest)
        dest_ok = watched(dest_rel) and not self._ignored(dest_rel)
        if not is_dir:  # written under a temporary name, closed, renamed in
            self.stability.closes.carry(src_rel, dest_rel)
        if is_dir:
            if dest_ok:
                self.walk_into(dest)
            src_prefix = src_rel.rstrip("/") + "/"
            for old in self.queue.seen_paths(src_prefix):
                new = dest_rel + "/" + old[len(src_prefix) :]
                if not (dest_ok and self._fast_move(old, new)):
                    self.gone(old, is_dir=False)
            for old in list(self.queue.correction_paths(src_prefix)):
                self.gone(old, is_dir=False)
            return
        if dest_ok and self._fast_move(src_rel, dest_rel):
            return
        if dest_ok:
            self.consider(dest, replaces=src_rel if watched(src_rel) else None)
        elif watched(src_rel):
            self.gone(src_rel, is_dir=False)

    def _fast_move(self, src_rel: str, dest_rel: str) -> bool:
        """A rename keeps the bytes: reuse the known hash instead of waiting and decoding."""
        seen = self.queue.seen_file(src_rel)
        if seen is None:
            return False
        try:
            info = os.lstat(self.stability.path_of(dest_rel))
        except OSError:
            return False
        if file_kind(info.st_mode) != "file" or (info.st_size, info.st_mtime) != seen[:2]:
            return False
        try:
            if not self._take(dest_rel, info.st_size, info.st_mtime, seen[2]):
                return False
        except MlupdatedError:
            return False  # the slow path (a candidate, retried with back-off) takes over
        self.gone(src_rel, is_dir=False)
        return True

    # --- taking a file ----------------------------------------------------------------

    def _take(self, rel: str, size: int, mtime: float, digest: str) -> bool:
        """Queue a complete, decodable file; True if it was accepted."""
        parts = rel.split("/")
        if parts[0] == "inbox":
            try:
                self._on_inbox(self.stability.path_of(rel), digest)
            except Exception as exc:
                self._log.error(
                    f"inbox handler failed for {show_path(rel)}", path=rel, error=str(exc)
                )
            self.queue.mark_seen(rel, size, mtime, digest)
            return True
        label, why = self._labels.label_of(rel)
        if label is None:
            self._reject_name(rel, size, mtime, why)
            return False
        change = self.queue.upsert_correction(
            path=rel, sha256=digest, label=label, size=size, mtime=mtime
        )
        log_change(self._log, change, root=self.workspace.root)
        if change.kind != "unchanged":
            try:
                self._on_correction(change)
            except Exception as exc:
                self._log.error("correction handler failed", path=rel, error=str(exc))
        return True

    def _reject_name(self, rel: str, size: int, mtime: float, reason: str) -> None:
        try:
            sig = file_sig(os.lstat(self.stability.path_of(rel)))
        except OSError:
            sig = (size, int(mtime * 1e9), 0)
        self.stability.refuse(rel, sig, reason)

    # --- the full rescan ---------------------------------------------------------------

    def load_labels(self) -> None:
        """(Re)read the model's class labels and input size when ``current.mlmodel``
        changed."""
        if self._labels.load(self.workspace.current_model):
            self.stability.target_size = self._labels.input_size

    def sweep(self) -> list[str]:
        """Walk both folders: take what is new or changed, retract what is gone.

        Returns the sources that were unavailable and are back (their watches need
        renewing).
        """
        self.load_labels()
        self._sources.new_sweep()
        seen = self.queue.seen_files()
        known = self.queue.correction_paths()
        found: set[str] = set()
        available: dict[str, bool] = {}
        for top in TOPS:
            top_dir = self.workspace.root / top
            available[top] = self._sources.dir_available(top)
            if not available[top]:
                self._sources.mark_unavailable(top)
                continue
            for path in walk(top_dir, self.config.intake.ignore):
                rel = self.rel(str(path))
                if self._ignored(rel):
                    continue
                found.add(rel)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if self.stability.is_bad(rel, file_sig(info)):
                    continue
                record = seen.get(rel)
                if (
                    record is not None
                    and record[:2] == (info.st_size, info.st_mtime)
                    and (top == "inbox" or rel in known)
                ):
                    continue
                self.consider(str(path))
        if available["corrections"]:
            self._sources.check_labels(self._labels.names)
        # What was unavailable and is back: say so, and re-watch it (the old watch died).
        back = self._sources.returned()
        for rel in sorted((set(known) | set(seen)) - found):
            if self.stability.is_waiting(rel) or not watched(rel):
                continue
            if self._sources.source_available(rel):
                self.gone(rel, is_dir=False)
        return back
