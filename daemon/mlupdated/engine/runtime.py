"""Run compiled graphs with onnxruntime, and cache compiled graphs on disk.

Compiling a large network takes a moment; the ONNX bytes are kept under the cache
directory, keyed by a hash of everything that decides them (spec bytes, cut point,
outputs, engine version), so the next start of the daemon skips compilation. A cache
file that onnxruntime cannot load is ignored and rewritten. Nothing here imports the
``onnx`` package unless a graph has to be compiled: a ``predict`` whose graph is in the
cache starts that much sooner.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import faults
from ..errors import EngineError
from ..fsutil import atomic_write_bytes
from ..logs import get_logger
from ..paths import cache_dir
from .network import OPSET
from .threads import DEFAULT_THREADS, Threads

if TYPE_CHECKING:
    import onnx

# Bump when a converter's output changes: it invalidates every cached graph.
ENGINE_VERSION = "6"
CACHE_SUBDIR = "graphs"
# onnxruntime severities: 0 verbose .. 3 error, 4 fatal. Warnings (e.g. about unused
# initializers) are not the user's business, and errors come back as EngineError with
# onnxruntime's message: its own log line would only say the same thing twice.
_LOG_SEVERITY = 4

_log = get_logger(__name__)


# onnxruntime's input type names -> the NumPy type a feed is converted to.
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(string)": object,
}


def _quiet_ort() -> Any:
    import onnxruntime as ort

    ort.set_default_logger_severity(_LOG_SEVERITY)
    return ort


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_memory() -> None:
    """Hand memory freed by dropped sessions back to the system.

    Dropping a session frees its weights and its arena into the C allocator, which keeps
    them for later (measured on the default model: 156 MB after 100 photos, 133 MB
    with only a trim, 80 MB with the session dropped and trimmed; onnxruntime's own
    arena shrinkage and a session without an arena did not lower it). So: collect
    cycles that may hold a session, then ask glibc to trim its heaps (``malloc_trim``;
    elsewhere nothing more is done).
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Session:
    """An onnxruntime session over a compiled graph (CPU), with every graph optimization
    onnxruntime has.

    ``threads.count`` worker threads (0: onnxruntime's choice); ``threads.spinning`` lets
    idle ones spin-wait for the next operator instead of sleeping, during a run only
    (they stop spinning when it returns). Off by default: the daemon and the trainer
    share the machine with other work, and on a busy machine spinning threads take CPU
    from the threads doing the work (measured: the engine ran 1.1-2x faster without it
    under load). A caller that owns the machine for a burst of calls may turn it on.
    """

    def __init__(
        self, model: onnx.ModelProto | bytes, *, threads: Threads = DEFAULT_THREADS
    ) -> None:
        ort = _quiet_ort()
        data = model if isinstance(model, bytes) else model.SerializeToString()
        options = ort.SessionOptions()
        options.log_severity_level = _LOG_SEVERITY
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads.count:
            options.intra_op_num_threads = threads.count
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if threads.spinning else "0"
        )
        if threads.spinning:
            # Spin between one operator and the next, never after the run: threads
            # that spin on after it take the CPU from whatever runs next (decoding
            # the next batch, another program).
            options.add_session_config_entry("session.force_spinning_stop", "1")
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineError(f"onnxruntime cannot load the compiled network: {exc}") from exc
        self.input_names = [i.name for i in self._session.get_inputs()]
        # Declared shapes (a str or None for a free dimension such as the batch).
        self.input_shapes = {i.name: list(i.shape) for i in self._session.get_inputs()}
        self._input_dtypes = {
            i.name: _DTYPES.get(i.type, np.float32) for i in self._session.get_inputs()
        }
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; ``feeds`` maps input names to batched arrays (converted to
        the type each input declares: float32 for every network)."""
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise EngineError(f"missing input(s): {', '.join(missing)}")
        arrays = {
            name: np.ascontiguousarray(feeds[name], dtype=self._input_dtypes[name])
            for name in self.input_names
        }
        try:
            results = self._session.run(self.output_names, arrays)
        except Exception as exc:
            raise EngineError(f"onnxruntime failed: {exc}") from exc
        return dict(zip(self.output_names, results, strict=True))


def cache_key(
    spec: Any,
    *,
    stop_before: int | None,
    outputs: Sequence[str] | None,
    batch: int | None = None,
    sequences: Mapping[str, int] | None = None,
) -> str:
    """The hash that names a compiled graph in the cache."""
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
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(spec.SerializeToString(deterministic=True))
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _onnx_version() -> str:
    """The installed onnx's version, read without importing it."""
    return metadata.version("onnx")


def _cache_path(
    spec: Any,
    *,
    stop_before: int | None,
    outputs: Sequence[str] | None,
    sequences: Mapping[str, int] | None = None,
) -> Any:
    key = cache_key(spec, stop_before=stop_before, outputs=outputs, sequences=sequences)
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
) -> Session:
    """Compile (or take from the cache) and load a session for ``spec``. A cache entry
    that onnxruntime cannot load is rebuilt (see :class:`Session` for ``threads``;
    ``sequences`` as in ``compile_network``)."""
    path = (
        _cache_path(spec, stop_before=stop_before, outputs=outputs, sequences=sequences)
        if cache
        else None
    )
    if path is not None:
        try:
            return Session(path.read_bytes(), threads=threads)
        except FileNotFoundError:
            pass
        except (OSError, EngineError) as exc:  # any damage means: rebuild it
            _log.warning("graph cache entry unreadable, rebuilding", path=str(path), error=str(exc))
    data = _compile_and_store(
        spec, path, stop_before=stop_before, outputs=outputs, sequences=sequences
    )
    return Session(data, threads=threads)


def __getattr__(name: str) -> Any:
    # ``compile_count``: how many graphs load_session compiled in this process (the
    # count lives in the fault seam; tests read it here to check the cache is used).
    if name == "compile_count":
        return faults.counted("compile")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
