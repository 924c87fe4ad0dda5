"""The update job, parent side: the daemon only prepares, waits and swaps.

:class:`UpdateRunner` (called by the scheduler) picks the pending corrections, starts
a run in the queue, hands the job to the training child (``worker_process`` starts
it, streams its progress events into the log and enforces ``timeout_seconds``;
``worker_child`` is the child itself), then passes the candidate through the gate,
adds it to the store and promotes it. A crash, a hang past the
timeout, a NaN (``DivergedError`` or non-finite weights) is a *failed* run: the
corrections stay pending and the scheduler backs off. The daemon never trains in its
own process, so none of that can take it down.

Test hooks (read from the environment; for the daemon's own tests only):

- ``MLUPDATED_TEST_WORKER_FAULT``: acted on by the child (``FAULT_ENV``, re-exported
  here for the tests).
- ``MLUPDATED_TEST_SWAP_DELAY`` = seconds the daemon sleeps between writing the new
  version and making it current, logged, so a test can kill -9 inside the swap.
- ``MLUPDATED_TEST_AFTER_SWAP_DELAY`` = seconds it sleeps after making it current and
  before marking the corrections trained (kill -9 there: the restart must notice).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fsutil import remove_stale_temps
from .overrides import training_overrides
from .worker_child import FAULT_ENV
from .worker_process import ChildOutcome, run_child

__all__ = [
    "AFTER_SWAP_DELAY_ENV",
    "FAULT_ENV",
    "SWAP_DELAY_ENV",
    "ChildOutcome",
    "UpdateRunner",
    "remove_stale_candidates",
]

SWAP_DELAY_ENV = "MLUPDATED_TEST_SWAP_DELAY"
AFTER_SWAP_DELAY_ENV = "MLUPDATED_TEST_AFTER_SWAP_DELAY"
CANDIDATE_PREFIX = "candidate-"


class UpdateRunner:
    """Runs one update at a time for the daemon (``run(reason) -> outcome``)."""

    def __init__(
        self,
        *,
        workspace: Any,
        queue: Any,
        store: Any,
        config: Callable[[], Any],
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

    def run(self, reason: str) -> str:
        """One update: returns ``promoted``, ``rejected``, ``failed``, ``abandoned`` or
        ``nothing``."""
        from . import gate as gate_module

        config = self._config()
        upd, rules = config.update, gate_module.GateRules.from_config(config.gate)
        pending = self._queue.pending()
        if not pending:
            return "nothing"
        seed = upd.seed if upd.seed is not None else int(time.time())
        train, held = gate_module.choose_holdout(pending, rules=rules, seed=seed)
        replayed = []
        if upd.policy == "replay":
            replayed = list(self._queue.trained_sample(upd.replay_sample, seed=seed))
        used = {c.id for c in train} | {c.id for c in replayed}
        earlier = [c for c in self._queue.all_trained() if c.id not in used]
        evaluation = list(held) + gate_module.sample_for_evaluation(earlier, seed=seed)
        parent = self._store.current_version()
        run_id = self._queue.start_run(correction_ids=[c.id for c in train], policy=upd.policy)
        started = time.monotonic()
        log = self._log.bind(run=run_id, parent=parent)
        log.info(
            "update started",
            trigger=reason,
            corrections=len(train),
            replayed=len(replayed),
            held_aside=len(held),
            evaluate_on=len(evaluation),
            policy=upd.policy,
        )
        candidate_path = self._ws.state / f"{CANDIDATE_PREFIX}{run_id}.mlmodel"
        try:
            outcome, version, loss, metrics, why = self._train_and_swap(
                run_id, parent, train, replayed, evaluation, candidate_path, config, log
            )
        except Exception as exc:  # our own bug or a store failure: a failed run, not a crash
            log.exception("update failed in the daemon")
            outcome, version, loss, metrics, why = "failed", None, None, {}, str(exc)
        finally:
            _unlink(candidate_path)
            _unlink(candidate_path.with_suffix(".stderr"))
        duration = round(time.monotonic() - started, 3)
        self._queue.finish_run(
            run_id,
            outcome=outcome,
            version=version,
            loss=loss,
            metrics=metrics,
            reason=why,
            duration=duration,
        )
        level = log.info if outcome == "promoted" else log.warning
        level(
            "update finished",
            outcome=outcome,
            version=version,
            loss=loss,
            reason=why,
            seconds=duration,
        )
        return outcome

    def _train_and_swap(
        self,
        run_id: int,
        parent: int,
        train: list[Any],
        replayed: list[Any],
        evaluation: list[Any],
        candidate_path: Path,
        config: Any,
        log: Any,
    ) -> tuple[str, int | None, float | None, dict[str, Any], str | None]:
        from . import gate as gate_module

        upd = config.update
        examples = train + replayed
        # The parent's own file: current.mlmodel may change under a rollback mid-run.
        model = Path(self._store.version_path(parent))
        job = {
            "model": str(model if model.is_file() else self._ws.current_model),
            "out": str(candidate_path),
            "examples": [[str(self._ws.root / c.path), c.label] for c in examples],
            "evaluate": [[str(self._ws.root / c.path), c.label] for c in evaluation],
            "overrides": training_overrides(upd),
            "cache_dir": str(self._ws.cache),
            "resize": config.intake.resize,
            "max_pixels": config.intake.max_pixels,
            "rehearse": upd.rehearsal,
        }
        child = run_child(
            job,
            timeout=upd.timeout_seconds,
            log=log,
            stderr_path=candidate_path.with_suffix(".stderr"),
            abort=self._abort,
        )
        if child.abandoned:
            return "abandoned", None, None, {}, child.error
        if not child.ok:
            return "failed", None, None, {}, f"{child.error_kind}: {child.error}"
        result = child.result
        loss = result.get("final_loss")
        from ..coreml.spec import load_spec_bytes  # only needed once a candidate exists
        from ..errors import MlupdatedError

        try:
            data = candidate_path.read_bytes()
            spec = load_spec_bytes(data, path=candidate_path)
            bad = gate_module.nonfinite_layers(spec)
        except (OSError, MlupdatedError) as exc:
            return "failed", None, loss, {}, f"candidate unreadable: {exc}"
        if bad or (loss is not None and not _finite(loss)):
            return (
                "failed",
                None,
                loss,
                {},
                (f"non-finite weights in {', '.join(bad)}" if bad else "non-finite loss"),
            )
        rules = gate_module.GateRules.from_config(config.gate)
        verdict = gate_module.judge(
            gate_module.Metrics.from_dict(result["current"]),
            gate_module.Metrics.from_dict(result["candidate"]),
            rules=rules,
        )
        metrics = {
            "examples_used": result.get("examples_used"),
            "examples_skipped": result.get("examples_skipped"),
            "replayed": len(replayed),
            "rehearsal": result.get("rehearsal_used", 0),
            "held_aside": sum(1 for c in evaluation if c.state == "pending"),
            "parameters": result.get("parameters_used"),
            "gate": verdict.to_dict(),
        }
        # Only the new corrections belong to this version; replayed ones were learned
        # before, and a file training could not read never was.
        unreadable = self._unreadable(train, result.get("skipped") or [], log)
        ids = [c.id for c in train if c.id not in unreadable]
        if self._store.current_version() != parent:
            return "abandoned", None, loss, metrics, "current model changed during the run"
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
            return "rejected", version, loss, metrics, verdict.reason
        delay = os.environ.get(SWAP_DELAY_ENV)
        if delay:
            log.warning("test hook: delaying the swap", version=version, seconds=float(delay))
            time.sleep(float(delay))
        self._store.promote(version)
        delay = os.environ.get(AFTER_SWAP_DELAY_ENV)
        if delay:
            log.warning("test hook: delaying after the swap", version=version, seconds=float(delay))
            time.sleep(float(delay))
        self._queue.mark_trained(ids, version)
        self._retain(config.store.keep_versions, log)
        return "promoted", version, loss, metrics, verdict.reason

    def _retain(self, keep: int, log: Any) -> None:
        from ..errors import MlupdatedError

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


def _unlink(path: Path) -> None:
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
        _unlink(entry)
        removed.append(entry)
    cache = Path(state_dir) / "cache"
    if cache.is_dir() and not cache.is_symlink():
        folders = [cache, *(p for p in cache.rglob("*") if p.is_dir() and not p.is_symlink())]
        for folder in folders:
            removed += remove_stale_temps(folder)
    return removed
