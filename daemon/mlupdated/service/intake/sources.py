"""The source folders, ``corrections/`` and ``inbox/``: walking them, and the mount-flap
rule.

When ``corrections/``, ``inbox/`` or a whole label folder is missing (or a share
mounted there is unmounted), nothing under it is treated as removed: the source is
marked unavailable (one warning) until it comes back (one line, and its watch is
renewed by the caller).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .filters import ignored_name, is_mount_point

TOPS = ("corrections", "inbox")


def watched(rel: str) -> bool:
    """True for a workspace-relative path inside ``corrections/`` or ``inbox/``."""
    parts = rel.split("/")
    return len(parts) >= 2 and parts[0] in TOPS and ".." not in parts


def via_symlinked_folder(root: Path, rel: str) -> bool:
    """True when ``rel`` is reached through a symlinked folder below ``corrections/`` or
    ``inbox/`` (never followed: it may lead out of the workspace, or loop). The top
    folders themselves may be links (to a sync folder, say)."""
    parts = rel.split("/")
    if len(parts) <= 2:
        return False
    expected = os.path.join(os.path.realpath(root / parts[0]), *parts[1:-1])
    return os.path.realpath((root / rel).parent) != expected


def walk(directory: Path, ignore: Iterable[str]) -> list[Path]:
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
            if ignored_name(entry.name, ignore):
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


class Sources:
    """Which source folders (workspace-relative) are there, and which are missing.

    Used from the intake worker thread; ``unavailable`` may be read from any thread.
    """

    def __init__(self, root: Path, *, log: Any) -> None:
        self.root = root
        self._log = log
        self._unavailable: set[str] = set()
        self._mounts: set[str] = set()
        self._mount_checked: set[str] = set()
        self._lock = threading.Lock()

    def unavailable(self) -> list[str]:
        """Sources (folders, relative) that are missing right now."""
        with self._lock:
            return sorted(self._unavailable)

    def new_sweep(self) -> None:
        """A full rescan starts: look at whether each folder is a mount point again."""
        self._mount_checked.clear()

    def dir_available(self, rel: str) -> bool:
        """A source folder is there: it exists and, if it was a mount point, still is one
        (an unmounted share leaves an empty folder that must not read as "all deleted")."""
        path = self.root / rel
        if not path.is_dir():
            return False
        if rel in self._mounts:
            return is_mount_point(path)
        if rel not in self._mount_checked:  # once per sweep: mounts made later count too
            self._mount_checked.add(rel)
            if is_mount_point(path):
                self._mounts.add(rel)
        return True

    def source_available(self, rel: str) -> bool:
        """False when the top folder or the label folder holding ``rel`` is missing."""
        parts = rel.split("/")
        if not self.dir_available(parts[0]):
            self.mark_unavailable(parts[0])
            return False
        if parts[0] == "corrections" and len(parts) >= 3:
            label = f"{parts[0]}/{parts[1]}"
            if not self.dir_available(label):
                self.mark_unavailable(label)
                return False
        return True

    def mark_unavailable(self, rel: str) -> None:
        """``rel`` is missing: warn once, until it is back."""
        with self._lock:
            if rel in self._unavailable:
                return
            self._unavailable.add(rel)
        self._log.warning(
            f"source unavailable: {rel} is missing; nothing under it is treated as removed "
            "until it returns",
            path=rel,
        )

    def check_labels(self, labels: Iterable[str]) -> None:
        """Mark each missing label folder of ``corrections/`` unavailable."""
        missing_labels = {
            f"corrections/{label}"
            for label in labels
            if not self.dir_available(f"corrections/{label}")
        }
        for rel in missing_labels:
            self.mark_unavailable(rel)

    def returned(self) -> list[str]:
        """The sources that were unavailable and are back (said once each; their watches
        need renewing)."""
        with self._lock:
            back = {r for r in self._unavailable if self.dir_available(r)}
            self._unavailable -= back
        for rel in sorted(back):
            self._log.info(f"source available again: {rel}", path=rel)
        return sorted(back)
