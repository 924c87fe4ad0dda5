"""Run compiled graphs with onnxruntime: a ``Session`` (the graph cache that feeds it
is ``graph_cache``), and handing memory back when sessions are dropped. Nothing here
imports the ``onnx`` package: a ``predict`` whose graph is in the cache starts that much
sooner.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EngineError
from ..logs import get_logger
from . import graph_files
from .threads import DEFAULT_THREADS, Threads

if TYPE_CHECKING:
    import onnx

# onnxruntime severities: 0 verbose .. 3 error, 4 fatal. Warnings (e.g. about unused
# initializers) are not the user's business, and errors come back as EngineError with
# onnxruntime's message: its own log line would only say the same thing twice.
_LOG_SEVERITY = 4

_log = get_logger(__name__)
# "... running Gather node. Name:'repeat/Gather__39' Status Message: indices ...".
_FAILED_NODE = re.compile(r"Name:'([^']+)/([A-Za-z]+)__\d+' Status Message: (.*)")


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

    ``model`` is a graph, its bytes or a cached graph's file; ``optimized`` the file
    where onnxruntime's optimized form of it is kept (see ``graph_files``).
    """

    def __init__(
        self,
        model: onnx.ModelProto | bytes | Path,
        *,
        threads: Threads = DEFAULT_THREADS,
        optimized: Path | None = None,
    ) -> None:
        ort = _quiet_ort()
        self._session = _optimized_session(ort, model, threads, optimized)
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
            raise EngineError(run_failure(str(exc))) from exc
        return dict(zip(self.output_names, results, strict=True))


def run_failure(message: str) -> str:
    """onnxruntime's message for a run that failed, as one line naming the Core ML
    layer whose node failed where the node still has the name the compiler gave it
    (``LAYER/OP__N``; nodes onnxruntime fused are renamed)."""
    message = " ".join(message.split())
    found = _FAILED_NODE.search(message)
    if found is None:
        return f"onnxruntime failed: {message}"
    layer, op, reason = found.groups()
    return f"onnxruntime failed in layer {layer!r} ({op}): {reason}"


def _options(ort: Any, threads: Threads, *, optimize: bool) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = _LOG_SEVERITY
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
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
    return options


def _inference_session(ort: Any, data: bytes, options: Any) -> Any:
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise EngineError(f"onnxruntime cannot load the compiled network: {exc}") from exc


def _optimized_session(
    ort: Any, model: onnx.ModelProto | bytes | Path, threads: Threads, optimized: Path | None
) -> Any:
    """A session over ``model`` (a graph, its bytes, or a cached graph's file). With
    ``optimized``, the file of onnxruntime's optimized form of that graph
    (``graph_files.optimized_path``): loaded as it is when it is there and loads, else
    written while the graph is optimized, for the next time."""
    if optimized is not None:
        try:
            ready = optimized.read_bytes()
        except OSError:
            ready = None
        if ready is not None:
            try:
                session = _inference_session(ort, ready, _options(ort, threads, optimize=False))
            except EngineError as exc:
                _log.warning(
                    "optimized graph unreadable, optimizing again",
                    path=str(optimized),
                    error=exc.reason,
                )
            else:
                graph_files.mark_used(optimized)
                return session
    if isinstance(model, Path):
        data = model.read_bytes()
    else:
        data = model if isinstance(model, bytes) else model.SerializeToString()
    options = _options(ort, threads, optimize=True)
    if optimized is None:
        return _inference_session(ort, data, options)
    temporary = graph_files.temporary_path(optimized)
    options.optimized_model_filepath = str(temporary)
    try:
        session = _inference_session(ort, data, options)
    except EngineError:
        # Perhaps only the optimized file could not be written: try without it.
        graph_files.discard(temporary)
        return _inference_session(ort, data, _options(ort, threads, optimize=True))
    try:
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, optimized)
    except OSError as exc:  # costs time only, next time
        graph_files.discard(temporary)
        _log.warning("optimized graph not kept", path=str(optimized), error=str(exc))
    return session
