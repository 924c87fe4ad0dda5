"""Start-up recovery of update runs a kill left open.

A run that was started and never finished was interrupted by a kill (-9, a power cut).
Two cases: killed after the swap but before the bookkeeping (the live model already
learned the run's corrections: record the run as promoted and the corrections as
trained, instead of training them twice), or killed before the swap (the run is
abandoned, its corrections are still pending, and the daemon redoes it at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .runs import Outcome

if TYPE_CHECKING:
    from ...logs import Logger
    from ..queue import Queue
    from ..store import ModelStore, VersionEntry


def close_interrupted_runs(queue: Queue, store: ModelStore, *, log: Logger) -> bool:
    """Finish the runs a kill left open in ``queue``; True when one must be redone."""
    redo = False
    current = store.current_version()
    for run in queue.interrupted_runs():
        ids = list(run.corrections or [])
        entry = _entry_for(store, current)
        # Killed after the swap but before the bookkeeping: the live model already
        # learned these corrections; record that instead of training them twice.
        done = _ids_of(entry) if entry else []
        if entry and entry.promoted and done and set(done) <= set(ids):
            queue.mark_trained(done, current)
            queue.finish_run(
                run.id,
                outcome=Outcome.PROMOTED,
                version=current,
                loss=entry.loss,
                metrics={},
                reason="completed at restart (killed after the swap)",
                duration=0.0,
            )
            log.warning("interrupted run was already swapped in", run=run.id, version=current)
            continue
        queue.finish_run(
            run.id,
            outcome=Outcome.ABANDONED,
            version=None,
            loss=None,
            metrics={},
            reason="daemon stopped during the run",
            duration=0.0,
        )
        log.warning(
            "interrupted run abandoned; it will be redone", run=run.id, corrections=len(ids)
        )
        redo = True
    return redo


def _entry_for(store: ModelStore, version: int) -> VersionEntry | None:
    for entry in store.manifest():
        if entry.version == version:
            return entry
    return None


def _ids_of(entry: VersionEntry) -> list[int]:
    return sorted(int(i) for i in entry.correction_ids)
