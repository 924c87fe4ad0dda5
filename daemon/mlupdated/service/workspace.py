"""The workspace: one directory that holds a daemon's config, folders, models and state.

::

    DIR/
      config.toml              every setting, commented
      inbox/                   photos to classify
      corrections/<Label>/     one folder per class label: drop = "this is <Label>"
      models/current.mlmodel   the live model
      models/versions/         every model made, NNNN.mlmodel
      models/manifest.json
      state/                   the SQLite queue, locks, cache
      predictions.jsonl        inbox predictions, one JSON object per line

``init_workspace`` is idempotent: it creates what is missing and never overwrites.
A directory is "the same workspace" when its version 1 is byte-identical to the model
given; anything else that would be overwritten makes it refuse with ``WorkspaceError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlupdatedError, ModelNotFoundError, ModelParseError, WorkspaceError
from ..fsutil import atomic_write_bytes
from .config_text import CONFIG_NAME, DEFAULT_CONFIG_TEXT

# The model store is imported where a workspace is made or checked, not here: finding
# the workspace around the current directory (every ``predict``) needs only paths.

WORKSPACE_ENV = "MLUPDATED_WORKSPACE"
DB_NAME = "mlupdated.db"
LOCK_NAME = "mlupdated.lock"


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace (nothing is created by looking at them)."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def corrections(self) -> Path:
        return self.root / "corrections"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def current_model(self) -> Path:
        return self.models / "current.mlmodel"

    @property
    def versions(self) -> Path:
        return self.models / "versions"

    @property
    def manifest(self) -> Path:
        return self.models / "manifest.json"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def db_path(self) -> Path:
        return self.state / DB_NAME

    @property
    def lock_path(self) -> Path:
        return self.state / LOCK_NAME

    @property
    def predictions_log(self) -> Path:
        return self.root / "predictions.jsonl"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the root, with forward slashes (how the queue names files)."""
        return Path(os.path.relpath(os.path.abspath(path), self.root)).as_posix()

    def is_workspace(self) -> bool:
        """True when the root looks like a workspace: its config, and its manifest or
        (the manifest lost) its version files."""
        return self.config_path.is_file() and (self.manifest.is_file() or _has_versions(self))


def _has_versions(ws: Workspace) -> bool:
    """True when ``models/versions/`` holds at least one version file."""
    from .store.files import StoreFiles

    return bool(StoreFiles(ws).files_on_disk())


def model_labels(model_path: str | os.PathLike[str]) -> list[str]:
    """The class labels of a model, as folder names (int64 labels as decimal text)."""
    return model_labels_and_input_size(model_path)[0]


def model_labels_and_input_size(
    model_path: str | os.PathLike[str],
) -> tuple[list[str], tuple[int, int] | None]:
    """The class labels (as folder names) and the (width, height) its image input is fed
    at (``None`` without an image input), from one load of the model."""
    from ..coreml.images import image_input, image_size
    from ..coreml.spec import class_labels, load_spec

    spec = load_spec(model_path)
    labels = [str(label) for label in class_labels(spec)]
    feature = image_input(spec)
    if feature is None:
        return labels, None
    try:
        return labels, image_size(feature.type.imageType)
    except MlupdatedError:  # no usable size: the decode check falls back to its own
        return labels, None


def _read_model(model_path: Path) -> tuple[bytes, list[str]]:
    """The model's bytes and its labels (as folder names).

    ``load_spec`` looks first (stat before any read: a file over the 2 GiB a model can
    be, an empty file, a FIFO are refused at once, with the same words as ``predict``
    and ``inspect``); only a file it accepted is read again for its exact bytes.
    """
    from ..coreml.spec import class_labels, load_spec
    from .store import model_parses

    spec = load_spec(model_path)
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError("no such file", path=model_path) from None
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read: {exc.strerror or exc}", path=model_path) from exc
    if not model_parses(data):  # replaced between the two reads
        raise ModelParseError("not a Core ML model (protobuf parse failed)", path=model_path)
    return data, [str(label) for label in class_labels(spec)]


def _check_label_name(label: str, model_path: Path) -> None:
    if not is_folder_name(label):
        raise WorkspaceError(f"class label {label!r} cannot be a folder name", path=model_path)


def is_folder_name(label: str) -> bool:
    """Whether a class label can be one folder under ``corrections/``: a model may carry
    any string as a label, and ``..``, a slash or a NUL byte must never become a path (a
    leading dot would make a folder intake ignores as hidden)."""
    return bool(label) and not label.startswith(".") and not any(c in label for c in "/\0")


def init_workspace(
    root: str | os.PathLike[str], *, model_path: str | os.PathLike[str]
) -> Workspace:
    """Create (or complete) a workspace at ``root`` around ``model_path``; see the module doc."""
    return make_workspace(root, model_path=model_path)[0]


def make_workspace(
    root: str | os.PathLike[str], *, model_path: str | os.PathLike[str]
) -> tuple[Workspace, list[Path]]:
    """:func:`init_workspace`, also returning what it created (empty: nothing to do)."""
    ws = Workspace(Path(root).expanduser().absolute())
    created, _ = _init(ws, Path(model_path))
    return ws, created


def _init(ws: Workspace, model_path: Path) -> tuple[list[Path], Workspace]:
    from .store import ModelStore, sha256_bytes

    model_bytes, labels = _read_model(model_path)
    if not labels:
        raise WorkspaceError("the model is not a classifier (no class labels)", path=model_path)
    for label in labels:
        _check_label_name(label, model_path)
    model_sha = sha256_bytes(model_bytes)
    root = ws.root
    if root.exists() and not root.is_dir():
        raise WorkspaceError("exists and is not a directory", path=root)
    _refuse_foreign(ws, model_sha)

    created: list[Path] = []

    def make_dir(path: Path) -> None:
        if path.is_dir():
            return
        if path.exists() or path.is_symlink():
            raise WorkspaceError("exists and is not a directory", path=path)
        path.mkdir(parents=True, mode=0o755)
        created.append(path)

    try:
        make_dir(root)
        for directory in (ws.inbox, ws.corrections, ws.models, ws.versions, ws.state):
            make_dir(directory)
        for label in labels:
            make_dir(ws.corrections / label)
        store = ModelStore(ws)
        if not ws.manifest.exists() and _has_versions(ws):
            # The index of a workspace's history was lost: rebuild it from the version
            # files; starting over would throw the versions away.
            store.recover()
            created.append(ws.manifest)
        elif not ws.manifest.exists():
            created += store.create(model_bytes, source=model_path.name)
        elif not ws.current_model.exists():
            store.recover()
            created.append(ws.current_model)
        if not ws.config_path.exists():
            atomic_write_bytes(ws.config_path, DEFAULT_CONFIG_TEXT.encode("utf-8"))
            created.append(ws.config_path)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot create the workspace: {exc.strerror or exc}",
            path=getattr(exc, "filename", None) or root,
        ) from exc
    return created, ws


def _refuse_foreign(ws: Workspace, model_sha: str) -> None:
    """Raise unless ``ws.root`` is empty, absent, or this very workspace (maybe unfinished)."""
    from .store import ModelStore, sha256_bytes, version_filename

    if not ws.root.is_dir():
        return
    first = ws.versions / version_filename(1)
    if ws.manifest.exists():
        try:
            entry = ModelStore(ws).entry(1)
        except Exception as exc:  # unreadable manifest: not ours to touch
            raise WorkspaceError(
                f"holds a workspace whose manifest cannot be read ({exc}); not touching it",
                path=ws.root,
            ) from None
        if entry.sha256 != model_sha:
            raise WorkspaceError(
                "holds a different workspace (its version 1 is another model); "
                "choose another directory",
                path=ws.root,
            )
        return
    if not first.exists() and _has_versions(ws):
        return  # a workspace whose manifest and first version were deleted: recovered
    if first.exists():
        try:
            same = sha256_bytes(first.read_bytes()) == model_sha
        except OSError:
            same = False
        if not same:
            raise WorkspaceError(
                "holds a different workspace (models/versions/0001.mlmodel is another model)",
                path=ws.root,
            )
        return
    # No manifest and no version 1: anything we would write must not be there yet.
    for path in (ws.config_path, ws.current_model, ws.manifest):
        if path.exists() or path.is_symlink():
            raise WorkspaceError(
                f"holds an unrelated {path.relative_to(ws.root)} that init would overwrite",
                path=ws.root,
            )


def open_workspace(
    root: str | os.PathLike[str], *, create: bool, model_path: str | os.PathLike[str] | None
) -> Workspace:
    """The workspace at ``root``; created around ``model_path`` if absent and ``create``."""
    ws = Workspace(Path(root).expanduser().absolute())
    if ws.is_workspace():
        # 0755 whatever the umask: status and rollback remake state/ too, and they do
        # not set the daemon's umask.
        ws.state.mkdir(parents=True, exist_ok=True, mode=0o755)
        for directory in (ws.inbox, ws.corrections):
            if not directory.exists() and not directory.is_symlink():
                directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        return ws
    if not create:
        raise WorkspaceError("not a workspace (create it with: mlupdated init DIR)", path=ws.root)
    if model_path is None:
        raise WorkspaceError("not a workspace, and no model to create it with", path=ws.root)
    return init_workspace(ws.root, model_path=model_path)


def find_workspace(start: Path | None = None) -> Path | None:
    """The workspace containing ``start`` (default: the current directory), if any.

    A directory is a workspace when it holds ``config.toml`` and the manifest."""
    here = (start or Path.cwd()).absolute()
    for candidate in (here, *here.parents):
        if Workspace(candidate).is_workspace():
            return candidate
    return None
