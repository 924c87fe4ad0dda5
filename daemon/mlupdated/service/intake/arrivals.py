"""What intake does with a path: wait until the file is complete, then take it.

``Arrivals`` holds intake's decisions and runs on its worker thread only (see
``intake.py`` for the threads). It owns a ``StabilityWait`` (``stability.py``: the
wait and the reader threads), which calls back when a file is complete. Its
decisions: queueing a complete correction or handing an inbox photo over, moves
(relabel), removals (retract), the full rescan, and the mount-flap rule: when
``corrections/``, ``inbox/`` or a whole label folder is missing (or a share mounted
there is unmounted), nothing under it is treated as removed.
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
from ..workspace import Workspace, model_labels_and_input_size
from .events import ReadDone
from .filters import (
    file_kind,
    file_sig,
    ignored_name,
    ignored_relpath,
    is_mount_point,
    match_label,
    show_path,
)
from .stability import StabilityWait

TOPS = ("corrections", "inbox")


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
        self._labels: list[str] = []
        self._label_notes: set[str] = set()
        self._labels_sig: tuple[int, int] | None = None
        self._unavailable: set[str] = set()
        self._mounts: set[str] = set()
        self._mount_checked: set[str] = set()
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The config in force (a reload replaces it here and in the stability wait)."""
        return self.stability.config

    @config.setter
    def config(self, config: Config) -> None:
        self.stability.config = config

    def unavailable(self) -> list[str]:
        """Sources (folders, relative) that are missing right now."""
        with self._lock:
            return sorted(self._unavailable)

    # --- paths ------------------------------------------------------------------------

    def rel(self, path: str) -> str:
        """``path`` relative to the workspace root, forward slashes."""
        return self.workspace.relative(path)

    def _watched(self, rel: str) -> bool:
        parts = rel.split("/")
        return len(parts) >= 2 and parts[0] in TOPS and ".." not in parts

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
        if not self._watched(rel) or self._ignored(rel) or self._via_symlinked_folder(rel):
            if replaces:
                self.gone(replaces, is_dir=False)
            return
        self.stability.wait_for(rel, replaces=replaces)

    def _via_symlinked_folder(self, rel: str) -> bool:
        """True when ``rel`` is reached through a symlinked folder below ``corrections/`` or
        ``inbox/`` (never followed: it may lead out of the workspace, or loop). The top
        folders themselves may be links (to a sync folder, say)."""
        parts = rel.split("/")
        if len(parts) <= 2:
            return False
        expected = os.path.join(os.path.realpath(self.workspace.root / parts[0]), *parts[1:-1])
        return os.path.realpath(self.stability.path_of(rel).parent) != expected

    def walk_into(self, directory: str) -> None:
        """A folder appeared (created or moved in): consider everything below it."""
        for path in self._walk(Path(directory)):
            self.consider(str(path))

    def _walk(self, directory: Path) -> list[Path]:
        """Every non-directory entry below ``directory``, skipping ignored names and never
        descending into symlinked folders."""
        found: list[Path] = []
        stack = [directory]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue
            for entry in entries:
                if ignored_name(entry.name, self.config.intake.ignore):
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    stack.append(Path(entry.path))
                else:
                    found.append(Path(entry.path))
        return found

    # --- removals and moves -----------------------------------------------------------

    def _dir_available(self, rel: str) -> bool:
        """A source folder is there: it exists and, if it was a mount point, still is one
        (an unmounted share leaves an empty folder that must not read as "all deleted")."""
        path = self.workspace.root / rel
        if not path.is_dir():
            return False
        if rel in self._mounts:
            return is_mount_point(path)
        if rel not in self._mount_checked:  # once per sweep: mounts made later count too
            self._mount_checked.add(rel)
            if is_mount_point(path):
                self._mounts.add(rel)
        return True

    def _source_available(self, rel: str) -> bool:
        """False when the top folder or the label folder holding ``rel`` is missing."""
        parts = rel.split("/")
        if not self._dir_available(parts[0]):
            self._mark_unavailable(parts[0])
            return False
        if parts[0] == "corrections" and len(parts) >= 3:
            label = f"{parts[0]}/{parts[1]}"
            if not self._dir_available(label):
                self._mark_unavailable(label)
                return False
        return True

    def _mark_unavailable(self, rel: str) -> None:
        with self._lock:
            if rel in self._unavailable:
                return
            self._unavailable.add(rel)
        self._log.warning(
            f"source unavailable: {rel} is missing; nothing under it is treated as removed "
            "until it returns",
            path=rel,
        )

    def gone(self, rel: str, *, is_dir: bool) -> None:
        """``rel`` (a file, or a folder with ``is_dir``) was removed: retract what it held,
        unless its source is unavailable (a mount flap) or a new file took its name."""
        if not self._watched(rel) and rel not in TOPS:
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
        if not self._source_available(rel):
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
        dest_ok = self._watched(dest_rel) and not self._ignored(dest_rel)
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
            self.consider(dest, replaces=src_rel if self._watched(src_rel) else None)
        elif self._watched(src_rel):
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
        if len(parts) < 3:
            self._reject_name(
                rel,
                size,
                mtime,
                f"not inside a label folder (model labels: {', '.join(self._labels)})",
            )
            return False
        match = match_label(parts[1], self._labels)
        if match.label is None:
            self._reject_name(rel, size, mtime, match.reason or "unknown label")
            return False
        label = match.label
        if match.note and parts[1] not in self._label_notes:
            self._label_notes.add(parts[1])
            self._log.info(match.note, folder=parts[1], label=label)
        change = self.queue.upsert_correction(
            path=rel, sha256=digest, label=label, size=size, mtime=mtime
        )
        self._log_change(change)
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

    def _log_change(self, change: CorrectionChange) -> None:
        c = change.correction
        # A copy that is gone was moved (its removal is handled next), not a conflict.
        conflicts = [p for p in change.conflicts if os.path.lexists(self.stability.path_of(p))]
        if change.kind == "new":
            self._log.info(
                f"correction queued: {show_path(change.path)} as {c.label}",
                path=change.path,
                label=c.label,
                id=c.id,
            )
        elif change.kind == "duplicate":
            self._log.info(
                f"duplicate: {show_path(change.path)} holds the same image as {show_path(c.path)}",
                path=change.path,
                id=c.id,
            )
        elif conflicts:
            others = ", ".join(show_path(p) for p in conflicts)
            self._log.warning(
                f"conflict: {show_path(change.path)} ({c.label}) is the same image as {others} "
                f"under another label; learning it as {c.label} (the latest drop): "
                "remove the wrong copy",
                path=change.path,
                id=c.id,
                label=c.label,
                others=conflicts,
            )
        elif change.kind == "relabelled":
            self._log.info(
                f"relabelled: {show_path(change.path)}: {change.previous_label} → {c.label} "
                "(the latest drop wins)",
                path=change.path,
                id=c.id,
                previous=change.previous_label,
                label=c.label,
            )

    # --- the full rescan ---------------------------------------------------------------

    def load_labels(self) -> None:
        """(Re)read the model's class labels and input size when ``current.mlmodel``
        changed."""
        model = self.workspace.current_model
        try:
            info = model.stat()
            sig = (info.st_size, info.st_mtime_ns)
            if sig == self._labels_sig:
                return
            self._labels, self.stability.target_size = model_labels_and_input_size(model)
            self._labels_sig = sig
        except (OSError, MlupdatedError) as exc:
            self._log.warning(
                "cannot read the model's labels; keeping the previous ones", error=str(exc)
            )

    def sweep(self) -> list[str]:
        """Walk both folders: take what is new or changed, retract what is gone.

        Returns the sources that were unavailable and are back (their watches need
        renewing).
        """
        self.load_labels()
        self._mount_checked.clear()
        seen = self.queue.seen_files()
        known = self.queue.correction_paths()
        found: set[str] = set()
        available: dict[str, bool] = {}
        for top in TOPS:
            top_dir = self.workspace.root / top
            available[top] = self._dir_available(top)
            if not available[top]:
                self._mark_unavailable(top)
                continue
            for path in self._walk(top_dir):
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
        missing_labels = {
            f"corrections/{label}"
            for label in self._labels
            if available["corrections"] and not self._dir_available(f"corrections/{label}")
        }
        for rel in missing_labels:
            self._mark_unavailable(rel)
        # What was unavailable and is back: say so, and re-watch it (the old watch died).
        with self._lock:
            back = {r for r in self._unavailable if self._dir_available(r)}
            self._unavailable -= back
        for rel in sorted(back):
            self._log.info(f"source available again: {rel}", path=rel)
        for rel in sorted((set(known) | set(seen)) - found):
            if self.stability.is_waiting(rel) or not self._watched(rel):
                continue
            if self._source_available(rel):
                self.gone(rel, is_dir=False)
        return sorted(back)
