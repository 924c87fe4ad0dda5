"""What a correction's folder means: the model's labels, the label folder matched to
one of them, and the line that says what a drop did (queued, duplicate, a conflict
between label folders, relabelled).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import MlupdatedError
from ..queue import CorrectionChange
from ..workspace import model_labels_and_input_size
from .filters import match_label, show_path


class Labels:
    """The model's class labels (re-read when the model file changed) and its input
    (width, height); hints about near-miss folder names are logged once per folder."""

    def __init__(self, *, log: Any) -> None:
        self._log = log
        self.names: list[str] = []
        self.input_size: tuple[int, int] | None = None
        self._notes: set[str] = set()
        self._sig: tuple[int, int] | None = None

    def load(self, model: Path) -> bool:
        """(Re)read the labels and input size when ``model`` changed; True when they were
        read again."""
        try:
            info = model.stat()
            sig = (info.st_size, info.st_mtime_ns)
            if sig == self._sig:
                return False
            self.names, self.input_size = model_labels_and_input_size(model)
            self._sig = sig
        except (OSError, MlupdatedError) as exc:
            self._log.warning(
                "cannot read the model's labels; keeping the previous ones", error=str(exc)
            )
            return False
        return True

    def label_of(self, rel: str) -> tuple[str | None, str]:
        """The label the correction at ``rel`` is learned as, or None and the reason it
        is not queued."""
        parts = rel.split("/")
        if len(parts) < 3:
            return None, f"not inside a label folder (model labels: {', '.join(self.names)})"
        match = match_label(parts[1], self.names)
        if match.label is None:
            return None, match.reason or "unknown label"
        if match.note and parts[1] not in self._notes:
            self._notes.add(parts[1])
            self._log.info(match.note, folder=parts[1], label=match.label)
        return match.label, ""


def log_change(log: Any, change: CorrectionChange, *, root: Path) -> None:
    """Say what recording a drop did (nothing for ``unchanged``)."""
    c = change.correction
    # A copy that is gone was moved (its removal is handled next), not a conflict.
    conflicts = [p for p in change.conflicts if os.path.lexists(root / p)]
    if change.kind == "new":
        log.info(
            f"correction queued: {show_path(change.path)} as {c.label}",
            path=change.path,
            label=c.label,
            id=c.id,
        )
    elif change.kind == "duplicate":
        log.info(
            f"duplicate: {show_path(change.path)} holds the same image as {show_path(c.path)}",
            path=change.path,
            id=c.id,
        )
    elif conflicts:
        others = ", ".join(show_path(p) for p in conflicts)
        log.warning(
            f"conflict: {show_path(change.path)} ({c.label}) is the same image as {others} "
            f"under another label; learning it as {c.label} (the latest drop): "
            "remove the wrong copy",
            path=change.path,
            id=c.id,
            label=c.label,
            others=conflicts,
        )
    elif change.kind == "relabelled":
        log.info(
            f"relabelled: {show_path(change.path)}: {change.previous_label} → {c.label} "
            "(the latest drop wins)",
            path=change.path,
            id=c.id,
            previous=change.previous_label,
            label=c.label,
        )
