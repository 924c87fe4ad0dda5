"""The feature cache: the frozen prefix's outputs per image, on disk.

An entry is keyed by the prefix hash (its layers, preprocessing and inputs: see
``train.split``), the content hash of the example (file bytes, or array bytes and
shape) and the resize mode, so an image already seen never goes through the backbone
again, within a run or across runs and model versions. Entries are ``.npz`` files of
the cut blobs, written atomically. An entry that cannot be read is ignored and
recomputed (and rewritten).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from ..engine import graph_cache
from ..errors import StoreError
from ..fsutil import atomic_write_bytes
from ..logs import get_logger
from ..paths import cache_dir

CACHE_SUBDIR = "features"
# Bump when the layout of an entry changes.
ENTRY_FORMAT = "1"
# Explicit, so a daemon started under a permissive umask makes no world-writable folder.
DIR_MODE = 0o755

_log = get_logger(__name__)


def entry_key(prefix_hash: str, content_hash: str, resize: str) -> str:
    """The name of an entry: hex SHA-256 of its three parts, the entry format and the
    engine version (features an older engine computed differently are not reused)."""
    text = f"{ENTRY_FORMAT}\0{graph_cache.ENGINE_VERSION}\0{prefix_hash}\0{content_hash}\0{resize}"
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Prefix outputs on disk under ``directory`` (default: the user's feature cache).

    ``computed`` counts examples whose features had to be computed (backbone work);
    ``hits`` counts entries read back. Tests assert on these, never on time.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        if directory is None:
            try:
                directory = cache_dir(CACHE_SUBDIR)
            except OSError as exc:
                raise StoreError(f"cannot create the feature cache: {exc.strerror or exc}") from exc
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        except OSError as exc:
            raise StoreError(
                f"cannot create the feature cache: {exc.strerror or exc}", path=self.directory
            ) from exc
        self.computed = 0
        self.hits = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str, blobs: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The stored features for ``key`` (each of ``blobs``), or ``None``."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                features = {name: np.asarray(data[name], dtype=np.float32) for name in blobs}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            _log.warning(
                "feature cache entry unreadable, recomputing", path=str(path), error=str(exc)
            )
            return None
        self.hits += 1
        return features

    def put(self, key: str, features: dict[str, np.ndarray]) -> None:
        """Store ``features`` under ``key``; a failed write costs time only."""
        path = self._path(key)
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(a, dtype=np.float32) for name, a in features.items()})
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            atomic_write_bytes(path, buffer.getvalue())
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            _log.warning("feature cache entry not written", path=str(path), error=str(exc))
