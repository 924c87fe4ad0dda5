"""The model store of a workspace: ``versions/NNNN.mlmodel``, ``manifest.json`` and
``current.mlmodel``, written atomically, repaired at start-up.

``files`` reads and writes the manifest and the version files; ``recovery`` repairs
what a kill or a person left behind; ``store`` adds versions, promotes, rolls back and
prunes (``ModelStore``).
"""

from __future__ import annotations

from .files import VERSION_DIGITS, model_parses, sha256_bytes, version_filename
from .manifest import MANIFEST_FORMAT, Manifest, VersionEntry
from .store import ModelStore

__all__ = [
    "MANIFEST_FORMAT",
    "VERSION_DIGITS",
    "Manifest",
    "ModelStore",
    "VersionEntry",
    "model_parses",
    "sha256_bytes",
    "version_filename",
]
