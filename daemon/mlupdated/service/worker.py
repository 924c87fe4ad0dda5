"""The update job: training runs in a child process, the daemon only waits and swaps.

Parent side (:class:`UpdateRunner`, called by the scheduler): pick the pending
corrections, start a run in the queue, start ``python -m mlupdated.service.worker``
with the job on stdin, stream its progress events into the log, enforce
``timeout_seconds``, then pass the candidate through the gate, add it to the store and
promote it. A crash, a hang past the timeout, a NaN (``DivergedError`` or non-finite
weights) is a *failed* run: the corrections stay pending and the scheduler backs off.
The daemon never trains in its own process, so none of that can take it down.

Child side (:func:`main`): load the current model, run ``train.task.run_update``,
write the candidate atomically to the path it was given, evaluate current and
candidate on the evaluation examples (the gate's numbers), and print one JSON object
per line: progress events, then a ``result`` or an ``error``. The child exits by
itself when its stdin closes, so a daemon killed with -9 leaves no trainer behind.

Test hooks (read from the environment; for the daemon's own tests only):

- ``MLUPDATED_TEST_WORKER_FAULT`` = ``crash`` (the child kills itself with SIGKILL, as
  the OOM killer would), ``hang`` (the child sleeps forever), ``nan`` (the child trains,
  then writes NaN into the candidate's updatable weights), ``diverge`` (the child
  reports ``DivergedError``).
- ``MLUPDATED_TEST_SWAP_DELAY`` = seconds the daemon sleeps between writing the new
  version and making it current, logged, so a test can kill -9 inside the swap.
- ``MLUPDATED_TEST_AFTER_SWAP_DELAY`` = seconds it sleeps after making it current and
  before marking the corrections trained (kill -9 there: the restart must notice).
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_ENV = "MLUPDATED_TEST_WORKER_FAULT"
SWAP_DELAY_ENV = "MLUPDATED_TEST_SWAP_DELAY"
AFTER_SWAP_DELAY_ENV = "MLUPDATED_TEST_AFTER_SWAP_DELAY"
CANDIDATE_PREFIX = "candidate-"
POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 3.0
STDERR_TAIL_CHARS = 600


@dataclass
class ChildOutcome:
    """What the training child reported."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error_kind: str | None = None
    error: str | None = None
    abandoned: bool = False


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
        self._child: subprocess.Popen[bytes] | None = None

    def abort(self) -> None:
        """Stop a running child now (shut-down past its timeout); the run is abandoned."""
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
        overrides = {
            k: v
            for k, v in (
                ("epochs", upd.epochs),
                ("learning_rate", upd.learning_rate),
                ("mini_batch_size", upd.batch_size),
                ("seed", upd.seed),
            )
            if v is not None
        }
        job = {
            "model": str(self._ws.current_model),
            "out": str(candidate_path),
            "examples": [[str(self._ws.root / c.path), c.label] for c in examples],
            "evaluate": [[str(self._ws.root / c.path), c.label] for c in evaluation],
            "overrides": overrides,
            "cache_dir": str(self._ws.cache),
            "resize": config.intake.resize,
        }
        child = self._run_child(
            job,
            timeout=upd.timeout_seconds,
            log=log,
            stderr_path=candidate_path.with_suffix(".stderr"),
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

    def _run_child(
        self, job: dict[str, Any], *, timeout: float, log: Any, stderr_path: Path
    ) -> ChildOutcome:
        self._abort.clear()
        with open(stderr_path, "wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "mlupdated.service.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                close_fds=True,
                # Its own session: a Ctrl-C at the daemon's terminal goes to the daemon,
                # which then decides (finish or abandon) instead of the child dying mid-run.
                start_new_session=True,
            )
        self._child = child
        lines: queue_module.Queue[bytes | None] = queue_module.Queue()

        def pump() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="worker-stdout", daemon=True).start()
        assert child.stdin is not None
        try:
            child.stdin.write(json.dumps(job).encode() + b"\n")
            child.stdin.flush()
        except OSError:
            pass  # the child died at once; its exit status tells why
        deadline = time.monotonic() + timeout
        outcome: ChildOutcome | None = None
        eof = False
        try:
            while not eof:
                if self._abort.is_set():
                    _stop(child)
                    return ChildOutcome(False, abandoned=True, error="daemon shutting down")
                if time.monotonic() > deadline:
                    _stop(child)
                    return ChildOutcome(
                        False, error_kind="timeout", error=f"no result within {timeout:g} s"
                    )
                try:
                    line = lines.get(timeout=POLL_SECONDS)
                except queue_module.Empty:
                    continue
                if line is None:
                    eof = True
                    break
                outcome = self._handle_line(line, log) or outcome
            code = child.wait(timeout=TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _stop(child)
            code = child.returncode
        finally:
            try:
                child.stdin.close()
            except OSError:
                pass
            self._child = None
        if outcome is not None and (outcome.ok or outcome.error_kind):
            return outcome
        tail = _tail(stderr_path)
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return ChildOutcome(False, error_kind="crash", error=f"training process {how}{tail}")

    def _handle_line(self, line: bytes, log: Any) -> ChildOutcome | None:
        try:
            message = json.loads(line)
        except ValueError:
            return None
        kind = message.pop("type", None)
        if kind == "progress":
            # structlog reserves "event" for the message itself.
            step = message.pop("event", None)
            (log.info if step in ("trainingBegin", "epochEnd") else log.debug)(
                "training progress", step=step, **message
            )
            return None
        if kind == "result":
            return ChildOutcome(True, result=message)
        if kind == "error":
            return ChildOutcome(False, error_kind=message.get("kind"), error=message.get("message"))
        return None


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _tail(path: Path) -> str:
    try:
        text = path.read_bytes()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    last = text.splitlines()[-1] if text else ""
    return f": {last}" if last else ""


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def remove_stale_candidates(state_dir: Path) -> list[Path]:
    """Delete candidates and child logs a killed daemon left in ``state/``."""
    removed = []
    for entry in Path(state_dir).glob(f"{CANDIDATE_PREFIX}*"):
        _unlink(entry)
        removed.append(entry)
    return removed


# --- the child ----------------------------------------------------------------------------


def _emit(message_type: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"type": message_type, **fields}, default=str) + "\n")
    sys.stdout.flush()


def _exit_when_orphaned() -> None:
    # The daemon holds our stdin open for as long as it wants us; EOF means it is gone.
    sys.stdin.buffer.read()
    os._exit(3)


def _poison(spec: Any) -> None:
    from ..coreml.spec import updatable_stage
    from ..coreml.weights import decode_weights, replace_weights
    from . import gate as gate_module

    stage = updatable_stage(spec)
    network = getattr(stage, stage.WhichOneof("Type"))
    for layer in network.layers:
        layer_type = layer.WhichOneof("layer")
        if layer.isUpdatable and layer_type in gate_module.WEIGHTED_LAYER_TYPES:
            params = getattr(layer, layer_type).weights
            values = decode_weights(params, count=None, layer=layer.name)
            values[:] = float("nan")
            replace_weights(params, values)
            return


def _child(job: dict[str, Any]) -> None:
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        _emit("progress", event="trainingBegin", note="test hook: hanging")
        while True:
            time.sleep(3600)
    # Heavy imports only after the hooks: a test of a crash or a hang must not wait for
    # NumPy and the Core ML protobufs to load on a busy machine.
    from ..errors import DivergedError
    from . import gate as gate_module

    if fault == "diverge":
        raise DivergedError("test hook: training diverged (non-finite loss)")
    from ..coreml.spec import class_labels, load_spec, save_spec
    from ..train.cache import FeatureCache
    from ..train.data import Example
    from ..train.task import run_update

    spec = load_spec(job["model"])
    # The queue keeps labels as folder names; a model may label its classes with ints.
    labels = {str(label): label for label in class_labels(spec)}
    examples = [Example(Path(p), labels.get(label, label)) for p, label in job["examples"]]

    def progress(event: Any) -> None:
        fields = event.as_dict() if hasattr(event, "as_dict") else dict(event)
        _emit("progress", **{k: v for k, v in fields.items() if _jsonable(v)})

    result = run_update(
        spec,
        examples,
        overrides=job["overrides"],
        progress=progress,
        cache=FeatureCache(Path(job["cache_dir"])),
        resize=job["resize"],
        should_stop=None,
    )
    if fault == "nan":
        _poison(result.spec)
    save_spec(result.spec, job["out"])
    evaluation = [(p, label) for p, label in job["evaluate"]]
    current = gate_module.evaluate(Path(job["model"]), evaluation)
    candidate = gate_module.evaluate(Path(job["out"]), evaluation)
    skipped = result.examples_skipped
    _emit(
        "result",
        examples_used=_count(result.examples_used),
        examples_skipped=_count(skipped),
        skipped=[[str(s.source), s.reason] for s in skipped] if isinstance(skipped, list) else [],
        final_loss=result.final_loss,
        parameters_used=result.parameters_used,
        current=current.to_dict(),
        candidate=candidate.to_dict(),
    )


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple | set) else int(value or 0)


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None))


def main() -> int:
    """Entry point of the training child (``python -m mlupdated.service.worker``)."""
    line = sys.stdin.buffer.readline()
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    try:
        _child(json.loads(line))
    except Exception as exc:
        _emit("error", kind=type(exc).__name__, message=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    code = 70
    try:
        code = main()
    finally:
        sys.stdout.flush()
        # Leave without interpreter finalisation: the orphan watcher still blocks in a
        # read of stdin, and finalising under it aborts the process.
        os._exit(code)
