"""The graph cache: compiled graphs on disk, and sessions loaded through it.

Compiling a large network takes a moment; the ONNX bytes are kept under the cache
directory, keyed by a hash of everything that decides them (the spec's bytes, cut
point, outputs, engine version), so the next start of the daemon or ``predict`` skips
compilation. Beside each graph, onnxruntime's optimized form of it for this machine
(``graph_files``). A cache file that onnxruntime cannot load is ignored and rewritten;
the cache keeps the most recently used files within a size bound.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import EngineError
from ..fsutil import atomic_write_bytes
from ..logs import get_logger
from ..paths import cache_dir
from . import graph_files
from .network import OPSET
from .runtime import Session
from .threads import DEFAULT_THREADS, Threads

# Bump when a converter's output changes: it invalidates every cached graph.
ENGINE_VERSION = "6"
CACHE_SUBDIR = "graphs"

_log = get_logger(__name__)


def cache_key(
    spec: Any,
    *,
    stop_before: int | None,
    outputs: Sequence[str] | None,
    batch: int | None = None,
    sequences: Mapping[str, int] | None = None,
    source: str | None = None,
) -> str:
    """The hash that names a compiled graph in the cache: of the spec's serialization,
    or of ``source`` where given (a name of the spec's bytes as read, see
    ``Predictor``), and of everything else that decides the graph."""
    digest = hashlib.sha256()
    header: dict[str, Any] = {
        "engine": ENGINE_VERSION,
        "opset": OPSET,
        "onnx": _onnx_version(),
        "stop_before": stop_before,
        "outputs": list(outputs) if outputs is not None else None,
        "batch": batch,
    }
    if sequences:
        # Only then: the keys of graphs without sequence inputs stay what they were.
        header["sequences"] = {name: int(n) for name, n in sequences.items()}
    if source is not None:
        header["source"] = source
    digest.update(json.dumps(header, sort_keys=True).encode())
    if source is None:
        digest.update(spec.SerializeToString(deterministic=True))
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _onnx_version() -> str:
    """The installed onnx's version, from the name of its distribution's folder: neither
    onnx nor ``importlib.metadata`` is imported (the latter took 40 ms of a warm
    ``predict``, a tenth of it)."""
    found = importlib.util.find_spec("onnx")
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        try:
            names = os.listdir(Path(location).parent)
        except OSError:
            continue
        for name in names:
            if name.startswith("onnx-") and name.endswith(".dist-info"):
                return name[len("onnx-") : -len(".dist-info")]
    from importlib import metadata

    return metadata.version("onnx")


def _cache_path(
    spec: Any,
    *,
    stop_before: int | None,
    outputs: Sequence[str] | None,
    sequences: Mapping[str, int] | None = None,
    source: str | None = None,
) -> Any:
    key = cache_key(
        spec, stop_before=stop_before, outputs=outputs, sequences=sequences, source=source
    )
    try:
        return cache_dir(CACHE_SUBDIR) / f"{key}.onnx"
    except OSError as exc:  # an unusable cache directory costs time only
        _log.warning("graph cache unavailable, compiling", error=str(exc))
        return None


def _compile_and_store(
    spec: Any,
    path: Any,
    *,
    stop_before: int | None,
    outputs: Sequence[str] | None,
    sequences: Mapping[str, int] | None = None,
) -> bytes:
    from .compile import compile_network

    model = compile_network(spec, stop_before=stop_before, outputs=outputs, sequences=sequences)
    faults.count("compile")
    data = model.SerializeToString()
    if path is not None:
        try:
            atomic_write_bytes(path, data)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written costs time only
            _log.warning("graph cache not written", path=str(path), error=str(exc))
        else:
            graph_files.prune(path.parent)
    return data


def compile_cached(
    spec: Any,
    *,
    stop_before: int | None = None,
    outputs: Sequence[str] | None = None,
    cache: bool = True,
) -> bytes:
    """The compiled graph's bytes, from the cache when present and readable (parsed
    by onnx here: callers that load a session use :func:`load_session`, which lets
    onnxruntime do the parsing)."""
    path = _cache_path(spec, stop_before=stop_before, outputs=outputs) if cache else None
    if path is not None:
        try:
            data = path.read_bytes()
            import onnx

            onnx.load_model_from_string(data)  # a corrupt file must not reach onnxruntime
            return data
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - any damage means: rebuild it
            _log.warning("graph cache entry unreadable, rebuilding", path=str(path), error=str(exc))
    return _compile_and_store(spec, path, stop_before=stop_before, outputs=outputs)


def load_session(
    spec: Any,
    *,
    stop_before: int | None = None,
    outputs: Sequence[str] | None = None,
    cache: bool = True,
    threads: Threads = DEFAULT_THREADS,
    sequences: Mapping[str, int] | None = None,
    source: str | None = None,
) -> Session:
    """Compile (or take from the cache) and load a session for ``spec``. A cache entry
    that onnxruntime cannot load is rebuilt (see :class:`Session` for ``threads``;
    ``sequences`` as in ``compile_network``; ``source`` as in :func:`cache_key`)."""
    path = (
        _cache_path(
            spec, stop_before=stop_before, outputs=outputs, sequences=sequences, source=source
        )
        if cache
        else None
    )
    if path is not None:
        optimized = graph_files.optimized_path(path)
        try:
            session = Session(path, threads=threads, optimized=optimized)
        except FileNotFoundError:
            pass
        except (OSError, EngineError) as exc:  # any damage means: rebuild it
            _log.warning("graph cache entry unreadable, rebuilding", path=str(path), error=str(exc))
        else:
            graph_files.mark_used(path)
            return session
    data = _compile_and_store(
        spec, path, stop_before=stop_before, outputs=outputs, sequences=sequences
    )
    return Session(
        data, threads=threads, optimized=graph_files.optimized_path(path) if path else None
    )


def __getattr__(name: str) -> Any:
    # ``compile_count``: how many graphs load_session compiled in this process (the
    # count lives in the fault seam; tests read it here to check the cache is used).
    if name == "compile_count":
        return faults.counted("compile")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
