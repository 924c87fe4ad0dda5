"""The update job, parent side: the daemon only prepares, waits and swaps.

:class:`UpdateRunner` (called by the scheduler) picks the pending corrections, starts
a run in the queue, hands the job to the training child (``process`` starts
it, streams its progress events into the log and enforces ``timeout_seconds``;
``worker_child`` is the child itself), then passes the candidate through the gate,
adds it to the store and promotes it. A crash, a hang past the
timeout, a NaN (``DivergedError`` or non-finite weights) is a *failed* run: the
corrections stay pending and the scheduler backs off. The daemon never trains in its
own process, so none of that can take it down. A run the gate rejects backs off too,
and after ``update.max_attempts`` rejections its corrections end as rejected
(``attempts``). The promotion holds the store's lock from its last look at the current
version to marking the corrections trained, so a ``rollback`` never lands in between.

Test hooks (a kill inside the swap, a crashing child) live in :mod:`mlupdated.faults`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import faults
from ...errors import MlupdatedError, PlacedByHandError
from ...faults import AFTER_SWAP_DELAY_ENV, SWAP_DELAY_ENV
from ..store.contract import PLACED_BY_HAND, placed_by_hand
from .attempts import give_up_rejected
from .batch import Batch, choose_batch, run_metrics
from .candidates import CANDIDATE_PREFIX, read_candidate, remove_stale_candidates, unlink
from .overrides import training_overrides
from .process import ChildOutcome, run_child
from .runs import Outcome, RunResult
from .worker_child import FAULT_ENV

if TYPE_CHECKING:
    from ..config import Config
    from ..queue import Queue
    from ..store import ModelStore
    from ..workspace import Workspace
    from .gate import Verdict

__all__ = [
    "AFTER_SWAP_DELAY_ENV",
    "FAULT_ENV",
    "SWAP_DELAY_ENV",
    "ChildOutcome",
    "UpdateRunner",
    "remove_stale_candidates",
]

CHANGED_DURING_RUN = "current model changed during the run"


class UpdateRunner:
    """Runs one update at a time for the daemon (``run(reason) -> outcome``)."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        queue: Queue,
        store: ModelStore,
        config: Callable[[], Config],
        log: Any,
    ) -> None:
        self._ws = workspace
        self._queue = queue
        self._store = store
        self._config = config
        self._log = log
        self._abort = threading.Event()

    def abort(self) -> None:
        """Stop a running child now (shut-down past its timeout); the run is abandoned.

        Final: the runner belongs to a daemon that is shutting down, so the flag is never
        cleared (a run that starts after it, or is about to start its child, is
        abandoned too instead of slipping through)."""
        self._abort.set()

    def run(self, reason: str) -> Outcome:
        """One update: how it ended (``Outcome.NOTHING`` when nothing was pending)."""
        config = self._config()
        pending = self._queue.pending()
        if not pending:
            return Outcome.NOTHING
        batch = choose_batch(pending, config, self._queue)
        parent = self._store.current_version()
        run_id = self._queue.start_run(
            correction_ids=[c.id for c in batch.train], policy=config.update.policy
        )
        started = time.monotonic()
        log = self._log.bind(run=run_id, parent=parent)
        log.info(
            "update started",
            trigger=reason,
            corrections=len(batch.train),
            replayed=len(batch.replayed),
            held_aside=len(batch.held),
            evaluate_on=len(batch.evaluation),
            policy=config.update.policy,
        )
        candidate_path = self._ws.state / f"{CANDIDATE_PREFIX}{run_id}.mlmodel"
        try:
            result = self._train_and_swap(run_id, parent, batch, candidate_path, config, log)
        except MlupdatedError as exc:  # a refusal we know (a model placed by hand wins): one line
            log.error("update failed", reason=str(exc))
            result = RunResult(Outcome.FAILED, reason=str(exc))
        except Exception as exc:  # our own bug: a failed run, not a crash
            log.exception("update failed in the daemon")
            result = RunResult(Outcome.FAILED, reason=str(exc))
        finally:
            unlink(candidate_path)
            unlink(candidate_path.with_suffix(".stderr"))
        self._finish(run_id, result, round(time.monotonic() - started, 3), log)
        if result.outcome is Outcome.REJECTED:
            give_up_rejected(
                self._queue,
                batch.train,
                max_attempts=config.update.max_attempts,
                reason=result.reason,
                log=log,
            )
        if result.version is not None:
            # Rejected and abandoned candidates are versions too: retention bounds them.
            self._retain(config.store.keep_versions, log)
        return result.outcome

    def _finish(self, run_id: int, result: RunResult, duration: float, log: Any) -> None:
        self._queue.finish_run(
            run_id,
            outcome=result.outcome,
            version=result.version,
            loss=result.loss,
            metrics=result.metrics,
            reason=result.reason,
            duration=duration,
        )
        level = log.info if result.outcome is Outcome.PROMOTED else log.warning
        level(
            "update finished",
            outcome=result.outcome.value,
            version=result.version,
            loss=result.loss,
            reason=result.reason,
            seconds=duration,
        )

    def _train_and_swap(
        self,
        run_id: int,
        parent: int,
        batch: Batch,
        candidate_path: Path,
        config: Any,
        log: Any,
    ) -> RunResult:
        """Train in the child, check and judge the candidate, store it, swap it in."""
        from . import gate as gate_module

        child = self._train(parent, batch, candidate_path, config, log)
        if child.abandoned:
            return RunResult(Outcome.ABANDONED, reason=child.error)
        if not child.ok:
            return RunResult(Outcome.FAILED, reason=f"{child.error_kind}: {child.error}")
        result = child.result
        loss = result.get("final_loss")
        data = read_candidate(candidate_path, loss)
        if isinstance(data, RunResult):
            return data
        verdict = gate_module.judge(
            gate_module.Metrics.from_dict(result["current"]),
            gate_module.Metrics.from_dict(result["candidate"]),
            rules=gate_module.GateRules.from_config(config.gate),
        )
        metrics = run_metrics(result, batch, verdict)
        # Only the new corrections belong to this version; replayed ones were learned
        # before, and a file training could not read never was.
        unreadable = self._unreadable(batch.train, result.get("skipped") or [], log)
        ids = [c.id for c in batch.train if c.id not in unreadable]
        return self._keep(data, parent, ids, loss, metrics, verdict, log)

    def _keep(
        self,
        data: bytes,
        parent: int,
        ids: list[int],
        loss: float | None,
        metrics: dict[str, Any],
        verdict: Verdict,
        log: Any,
    ) -> RunResult:
        """Add the judged candidate to the store and, when it passed, swap it in; a run
        whose parent is no longer current is abandoned before either."""
        if self._store.current_version() != parent:
            return RunResult(
                Outcome.ABANDONED,
                loss=loss,
                metrics=metrics,
                reason=CHANGED_DURING_RUN,
            )
        version = self._store.add_version(
            data,
            parent=parent,
            reason="update" if verdict.passed else "rejected by gate",
            corrections=ids,
            loss=loss,
            metrics=metrics,
            gate=verdict.to_dict(),
        )
        if not verdict.passed:
            return RunResult(Outcome.REJECTED, version, loss, metrics, verdict.reason)
        why = self._swap(version, parent, ids, log)
        if why is not None:
            return RunResult(Outcome.ABANDONED, version, loss, metrics, why)
        return RunResult(Outcome.PROMOTED, version, loss, metrics, verdict.reason)

    def _train(
        self, parent: int, batch: Batch, candidate_path: Path, config: Any, log: Any
    ) -> ChildOutcome:
        """Run the training child on the batch; it writes the candidate."""
        upd = config.update
        # The parent's own file: current.mlmodel may change under a rollback mid-run.
        model = Path(self._store.version_path(parent))
        job = {
            "model": str(model if model.is_file() else self._ws.current_model),
            "out": str(candidate_path),
            "examples": [[str(self._ws.root / c.path), c.label] for c in batch.examples],
            "evaluate": [[str(self._ws.root / c.path), c.label] for c in batch.evaluation],
            "overrides": training_overrides(upd),
            "cache_dir": str(self._ws.cache),
            "resize": config.intake.resize,
            "max_pixels": config.intake.max_pixels,
            "rehearse": upd.rehearsal,
        }
        return run_child(
            job,
            timeout=upd.timeout_seconds,
            log=log,
            stderr_path=candidate_path.with_suffix(".stderr"),
            abort=self._abort,
        )

    def _swap(self, version: int, parent: int, ids: list[int], log: Any) -> str | None:
        """Make ``version`` current, then mark its corrections trained; None when done,
        else why nothing was done (the current model is no longer ``parent``).

        The store's lock is held from the check to the marking, so a ``rollback`` lands
        either before (the candidate is abandoned, the rollback stands) or after (it
        rolls this version back and sends its corrections back to pending). A model
        placed by hand in the meantime wins the same way."""
        faults.delay("swap", log=log, version=version)
        with self._store.locked():
            why = None
            current = self._store.current_version()
            if current != parent:
                placed = self._store.entry(current).reason == PLACED_BY_HAND
                why = placed_by_hand(current) if placed else CHANGED_DURING_RUN
            else:
                try:
                    self._store.promote(version)
                except PlacedByHandError as exc:
                    why = exc.reason
            if why is not None:
                log.warning("candidate not promoted", version=version, parent=parent, reason=why)
                return why
            faults.delay("after_swap", log=log, version=version)
            self._queue.mark_trained(ids, version)
        return None

    def _retain(self, keep: int, log: Any) -> None:
        try:
            removed = self._store.apply_retention(keep)
        except MlupdatedError as exc:  # old versions piling up is no reason to fail a run
            log.warning("old model versions not removed", error=str(exc))
            return
        if removed:
            log.info("old model versions removed", versions=removed, keep=keep)

    def _unreadable(self, train: list[Any], skipped: list[Any], log: Any) -> set[int]:
        by_path = {str(self._ws.root / c.path): c.id for c in train}
        bad: dict[int, str] = {}
        for source, reason in skipped:
            if source in by_path:
                bad[by_path[source]] = reason
        for cid, reason in bad.items():
            log.warning("correction unusable for training", id=cid, reason=reason)
            self._queue.mark_rejected([cid], reason)
        return set(bad)
