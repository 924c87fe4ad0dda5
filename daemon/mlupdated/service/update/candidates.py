"""The candidate model file of a run: reading and checking it, and the leftovers a
killed daemon leaves in ``state/``."""

from __future__ import annotations

from pathlib import Path

from ...errors import MlupdatedError
from ...fsutil import remove_stale_temps
from .runs import Outcome, RunResult

CANDIDATE_PREFIX = "candidate-"


def unlink(path: Path) -> None:
    """Remove ``path`` if it is there (a file already gone, or not removable, is left)."""
    try:
        path.unlink()
    except OSError:
        pass


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def remove_stale_candidates(state_dir: Path) -> list[Path]:
    """Delete candidates and child logs a killed daemon left in ``state/``, the
    half-written files of ``state/`` itself (``status.json`` is rewritten every few
    seconds, so a kill can land inside that write), and the half-written entries a
    killed training child left in the feature cache (only one daemon holds the
    workspace, so no writer of them is alive at start-up)."""
    removed = remove_stale_temps(state_dir)
    for entry in Path(state_dir).glob(f"{CANDIDATE_PREFIX}*"):
        unlink(entry)
        removed.append(entry)
    cache = Path(state_dir) / "cache"
    if cache.is_dir() and not cache.is_symlink():
        folders = [cache, *(p for p in cache.rglob("*") if p.is_dir() and not p.is_symlink())]
        for folder in folders:
            removed += remove_stale_temps(folder)
    return removed


def read_candidate(path: Path, loss: float | None) -> bytes | RunResult:
    """The candidate's bytes, or the failed run when it is unreadable or not finite."""
    # Imported here: the training child imports this package and must start light.
    from ...coreml.spec import load_spec_bytes
    from . import gate as gate_module

    try:
        data = path.read_bytes()
        spec = load_spec_bytes(data, path=path)
        bad = gate_module.nonfinite_layers(spec)
    except (OSError, MlupdatedError) as exc:
        return RunResult(Outcome.FAILED, loss=loss, reason=f"candidate unreadable: {exc}")
    if bad or (loss is not None and not _finite(loss)):
        why = f"non-finite weights in {', '.join(bad)}" if bad else "non-finite loss"
        return RunResult(Outcome.FAILED, loss=loss, reason=why)
    return data
