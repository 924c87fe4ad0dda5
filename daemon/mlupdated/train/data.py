"""Training examples: (image path or array, label) pairs, and the label-folder layout.

``DIR/<Label>/...`` holds the images of one label (sub-folders inside a label folder
count too). Examples come out in byte order of their path relative to ``DIR``, which
is the order an update uses when shuffling is off. Hidden files and folders (a leading
dot) are skipped. Whether an image is readable is found out when it is decoded (the
update task reports and skips the ones that are not).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TrainingDataError

Label = str | int


@dataclass(frozen=True)
class CutValues:
    """An example given as the values of the blobs the trainable layers read: it skips
    the frozen prefix (a model's rehearsal set, see ``rehearsal.py``)."""

    blobs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Example:
    """One training example: an image file (or an input array) and its label.

    An array is the model input as the engine takes it: ``(C, H, W)`` 0..255 for an
    image input, the multi-array shape otherwise. ``label`` is a class label (string or
    int64) for a classifier, or the target array for a mean-squared-error loss.
    """

    source: Path | np.ndarray | CutValues
    label: Label | np.ndarray

    def describe(self) -> str:
        """How the example is named in messages (its path, ``<array>`` or ``<rehearsal>``)."""
        if isinstance(self.source, CutValues):
            return "<rehearsal>"
        return str(self.source) if isinstance(self.source, Path) else "<array>"


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _match_label(name: str, labels: Sequence[Label]) -> Label | None:
    for label in labels:
        if isinstance(label, str) and label == name:
            return label
        if isinstance(label, int) and name.strip() == str(label):
            return label
    return None


@dataclass(frozen=True)
class FolderListing:
    """The examples of a data folder, and the entries passed over that are not files
    (a FIFO, a socket, a device: reading one could block or never end), with why."""

    examples: list[Example]
    not_files: list[tuple[Path, str]]


def examples_from_folder(
    directory: str | os.PathLike[str],
    labels: Sequence[Label],
    *,
    allow_new_labels: bool = False,
) -> list[Example]:
    """The examples under ``directory``'s label folders (see :func:`list_folder`)."""
    return list_folder(directory, labels, allow_new_labels=allow_new_labels).examples


def list_folder(
    directory: str | os.PathLike[str],
    labels: Sequence[Label],
    *,
    allow_new_labels: bool = False,
) -> FolderListing:
    """The examples under ``directory``'s label folders, in relative-path byte order.

        A folder whose name is not one of ``labels`` raises ``TrainingDataError`` naming it
        and listing the labels, unless ``allow_new_labels`` (k-nearest-neighbours models
        can learn a new class; the folder name becomes the label, an int when the model's
        labels are ints). A missing or empty data folder is an error too, and so is a
    folder that cannot be listed.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TrainingDataError("not a folder of <Label>/ sub-folders", path=root)
    int_labels = bool(labels) and all(isinstance(label, int) for label in labels)
    found: list[tuple[bytes, Example]] = []
    not_files: list[tuple[Path, str]] = []
    try:
        with os.scandir(root) as listing:
            entries = [root / item.name for item in listing]
    except OSError as exc:
        raise TrainingDataError(f"cannot list: {exc.strerror or exc}", path=root) from exc
    for entry in sorted(entries, key=lambda p: os.fsencode(p.name)):
        if _is_hidden(entry.name) or not entry.is_dir():
            continue
        label = _match_label(entry.name, labels)
        if label is None:
            if not allow_new_labels:
                listed = ", ".join(str(x) for x in labels) or "(none)"
                raise TrainingDataError(
                    f"folder '{entry.name}' is not one of the model's labels ({listed})",
                    path=entry,
                )
            label = _new_label(entry, int_labels)
        for path in _files_under(entry, not_files):
            relative = os.fsencode(path.relative_to(root).as_posix())
            found.append((relative, Example(path, label)))
    found.sort(key=lambda item: item[0])
    if not found:
        raise TrainingDataError("no example images found in the label folders", path=root)
    return FolderListing([example for _, example in found], sorted(not_files))


def _new_label(folder: Path, int_labels: bool) -> Label:
    if not int_labels:
        return folder.name
    try:
        return int(folder.name)
    except ValueError:
        raise TrainingDataError(
            f"folder '{folder.name}' is not a whole number, and the model's labels are",
            path=folder,
        ) from None


def _unlistable(exc: OSError) -> None:
    # A folder that cannot be listed would otherwise look empty: its images unused.
    raise TrainingDataError(f"cannot list: {exc.strerror or exc}", path=exc.filename) from exc


def _files_under(folder: Path, not_files: list[tuple[Path, str]]) -> list[Path]:
    files: list[Path] = []
    for current, dirs, names in os.walk(folder, onerror=_unlistable):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        for name in names:
            path = Path(current) / name
            if _is_hidden(name):
                continue
            if path.is_file():
                files.append(path)
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:  # a dangling link, or one we may not follow
                not_files.append((path, f"cannot read: {exc.strerror or exc}"))
                continue
            not_files.append((path, f"not a regular file ({_special_kind(mode)})"))
    return files


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
