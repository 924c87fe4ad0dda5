"""Every error mlupdated raises on purpose.

One tree: ``MlupdatedError`` at the root, a few categories under it, and specific
leaves with a one-sentence docstring and context attributes. Other libraries'
exceptions (protobuf, onnxruntime, Pillow, OSError, sqlite3) are translated into
these at the boundary where they happen, so callers catch only our types. The CLI
maps categories to exit codes and prints ``str(error)``: one line that names the
file (or key, or layer) and the reason.
"""

from __future__ import annotations

from os import PathLike


def _where(path: str | PathLike[str] | None) -> str:
    return f"{path}: " if path is not None else ""


class MlupdatedError(Exception):
    """Base of every error mlupdated raises on purpose."""

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None) -> None:
        self.reason = message
        self.path = str(path) if path is not None else None
        super().__init__(f"{_where(path)}{message}")


# --- models -----------------------------------------------------------------------


class ModelError(MlupdatedError):
    """A model file could not be read, understood, run or written."""


class ModelNotFoundError(ModelError):
    """The model file does not exist or cannot be opened."""


class ModelParseError(ModelError):
    """The file is not a Core ML model (protobuf parse failed, empty, truncated)."""


class UnsupportedModelError(ModelError):
    """The model is a valid Core ML file of a kind or version we do not run."""


class UnsupportedLayerError(UnsupportedModelError):
    """The network contains a layer type the engine has no converter for."""

    def __init__(
        self,
        message: str,
        *,
        layer: str,
        layer_type: str,
        supported: tuple[str, ...] = (),
        path: str | PathLike[str] | None = None,
    ) -> None:
        self.layer = layer
        self.layer_type = layer_type
        self.supported = supported
        super().__init__(message, path=path)


class InvalidModelError(ModelError):
    """The model breaks a structural rule (shapes, names, missing weights)."""

    def __init__(
        self, message: str, *, layer: str | None = None, path: str | PathLike[str] | None = None
    ) -> None:
        self.layer = layer
        super().__init__(message, path=path)


class NotUpdatableError(ModelError):
    """The model breaks one of Core ML's rules for updatable models."""

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        layer: str | None = None,
        path: str | PathLike[str] | None = None,
    ) -> None:
        self.rule = rule
        self.layer = layer
        super().__init__(message, path=path)


class EngineError(ModelError):
    """The compiled network failed to build or run (onnxruntime refused it)."""


# --- prediction inputs --------------------------------------------------------------


class FeatureError(MlupdatedError):
    """An input given to predict is missing, unknown, or of the wrong type or shape."""


# --- images -----------------------------------------------------------------------


class ImageError(MlupdatedError):
    """An input image could not be turned into a tensor."""


class ImageDecodeError(ImageError):
    """The file is empty, truncated, corrupt, or not an image at all."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (decompression bomb guard)."""


class UnsupportedImageError(ImageError):
    """The image is in a format or mode we cannot decode here (e.g. HEIC without a decoder)."""


# --- training ---------------------------------------------------------------------


class TrainingError(MlupdatedError):
    """An update task could not run or produced an unusable model."""


class ParameterError(TrainingError):
    """A training parameter override lies outside the range or set the model allows."""

    def __init__(
        self, message: str, *, parameter: str, path: str | PathLike[str] | None = None
    ) -> None:
        self.parameter = parameter
        super().__init__(message, path=path)


class TrainingDataError(TrainingError):
    """The training data is unusable: unknown label folder, no readable example."""


class DivergedError(TrainingError):
    """Training produced a non-finite loss or non-finite weights."""


# --- configuration ----------------------------------------------------------------


class ConfigError(MlupdatedError):
    """The configuration file or a command-line option is invalid."""

    def __init__(
        self, message: str, *, key: str | None = None, path: str | PathLike[str] | None = None
    ) -> None:
        self.key = key
        super().__init__(message, path=path)


# --- storage ----------------------------------------------------------------------


class StoreError(MlupdatedError):
    """The workspace, model store or queue database could not be read or written."""


class PlacedByHandError(StoreError):
    """A promotion refused because a model placed by hand is current: it wins."""


class WorkspaceError(StoreError):
    """The workspace is missing, belongs to something else, or is inconsistent."""


class AlreadyRunningError(StoreError):
    """Another daemon holds the workspace lock."""


class DiskFullError(StoreError):
    """A write failed because the disk (or a file size limit) is full."""
