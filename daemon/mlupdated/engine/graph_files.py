"""The graph cache's files beside the compiled graphs (``graph_cache``): onnxruntime's
optimized form of a graph for this machine, and the bound on the cache's size.

onnxruntime rewrites a graph when it loads it (fusions, constant folding, its blocked
memory layout for convolutions): about 40 ms of a warm ``predict`` for the default
model. The rewritten graph is kept as ``KEY.TAG.opt.onnx`` next to ``KEY.onnx`` and
loaded as it is the next time. Some of those rewrites are for this processor's
instruction set, so ``TAG`` names the onnxruntime version, the architecture and the
processor's feature flags: a cache folder shared between machines keeps one per kind
of machine.

Every model version the daemon trains gets its own compiled graph; the cache keeps
the most recently used files up to ``CACHE_BYTES`` (never fewer than ``KEEP_AT_LEAST``)
and deletes the rest after it writes a new one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from functools import lru_cache
from pathlib import Path

from ..fsutil import TEMP_PREFIX
from ..logs import get_logger

OPTIMIZED_SUFFIX = ".opt.onnx"
# The cache's size bound: the default model's graph and its optimized form are 14 MB
# each, so this keeps dozens of model versions.
CACHE_BYTES = 1 << 30
KEEP_AT_LEAST = 4
# A temporary file older than this was left by a process that died while writing.
STALE_TEMP_S = 600.0
_CPU_INFO = Path("/proc/cpuinfo")
# The line of /proc/cpuinfo that lists the instruction-set extensions (x86, Arm).
_FLAG_LINES = ("flags", "features")

_log = get_logger(__name__)


@lru_cache(maxsize=1)
def machine_tag() -> str:
    """What an optimized graph depends on besides the graph: onnxruntime's version,
    the processor's architecture and its feature flags (16 hex digits)."""
    import onnxruntime

    flags = _cpu_flags() or platform.processor()
    text = f"{onnxruntime.__version__}\0{platform.machine()}\0{flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cpu_flags() -> str:
    """The first feature-flags line of ``/proc/cpuinfo`` ("" where there is none)."""
    try:
        with _CPU_INFO.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip().lower() in _FLAG_LINES:
                    return value.strip()
    except OSError:
        pass
    return ""


def optimized_path(graph: Path) -> Path:
    """Where onnxruntime's optimized form of the cached ``graph`` is kept for this kind
    of machine."""
    return graph.with_name(f"{graph.stem}.{machine_tag()}{OPTIMIZED_SUFFIX}")


def temporary_path(final: Path) -> Path:
    """A file name beside ``final`` for writing it before it is renamed into place (a
    name :func:`prune` removes if it is left behind)."""
    return final.with_name(f"{TEMP_PREFIX}{os.getpid()}-{final.name}")


def mark_used(path: Path) -> None:
    """Note that a cache file was used now (its modification time), so that
    :func:`prune` keeps it over files unused for longer."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune(directory: Path, *, budget: int = CACHE_BYTES, keep: int = KEEP_AT_LEAST) -> list[Path]:
    """Delete the least recently used cache files beyond ``budget`` bytes (the ``keep``
    most recently used stay whatever their size) and temporary files left by writers
    that died; returns what was deleted. Files that vanish meanwhile (another process
    pruning) are skipped."""
    entries: list[tuple[float, int, Path]] = []
    removed: list[Path] = []
    now = time.time()
    try:
        names = list(directory.iterdir())
    except OSError:
        return removed
    for path in names:
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.name.startswith(TEMP_PREFIX):
            if now - info.st_mtime > STALE_TEMP_S and discard(path):
                removed.append(path)
        elif path.suffix == ".onnx":
            entries.append((info.st_mtime, info.st_size, path))
    entries.sort(reverse=True)
    total = 0
    for index, (_, size, path) in enumerate(entries):
        total += size
        if index >= keep and total > budget and discard(path):
            removed.append(path)
    if removed:
        _log.info("graph cache pruned", removed=len(removed), directory=str(directory))
    return removed


def discard(path: Path) -> bool:
    """Delete a cache file; whether it was deleted (it may have gone already)."""
    try:
        path.unlink()
    except OSError:
        return False
    return True
