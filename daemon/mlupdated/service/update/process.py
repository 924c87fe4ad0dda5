"""The training child seen from the daemon: start it, feed it, read it, stop it.

The child (``python -m mlupdated.service.update.worker_child``) gets its job as one JSON line
on stdin and answers with one JSON object per line on stdout: ``progress`` events,
then a ``result`` or an ``error``. Anything else (no answer, a signal, a hang past the
timeout) becomes a :class:`ChildOutcome` that says what happened, never an exception.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...logs import Logger

CHILD_MODULE = "mlupdated.service.update.worker_child"
POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 3.0
STDERR_TAIL_CHARS = 600
# The head's matrix products are tiny: BLAS threads only fight the daemon and the
# backbone (onnxruntime has its own pool) for the cores; one thread each was about 3x
# faster for a warm update on a busy 2-core machine. A value the user set is kept.
SINGLE_THREADED_BLAS = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass
class ChildOutcome:
    """What the training child reported."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error_kind: str | None = None
    error: str | None = None
    abandoned: bool = False


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The training child's environment: ``base`` (default: ours) with BLAS kept to one
    thread unless the user chose otherwise."""
    env = dict(os.environ if base is None else base)
    for name, value in SINGLE_THREADED_BLAS.items():
        env.setdefault(name, value)
    return env


def run_child(
    job: dict[str, Any],
    *,
    timeout: float,
    log: Logger,
    stderr_path: Path,
    abort: threading.Event,
) -> ChildOutcome:
    """Run the training child on ``job`` and return what it reported.

    Its progress events go to ``log`` as they come; its stderr goes to ``stderr_path``
    (the last line of it explains a crash). Past ``timeout`` seconds, or once ``abort``
    is set, the child is terminated (then killed) and the outcome says why.
    """
    child = _start(stderr_path)
    lines = _stdout_lines(child)
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(job).encode() + b"\n")
        child.stdin.flush()
    except OSError:
        pass  # the child died at once; its exit status tells why
    deadline = time.monotonic() + timeout
    outcome: ChildOutcome | None = None
    try:
        while True:
            if abort.is_set():
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
            if line is None:  # stdout closed: the child is done, one way or another
                break
            outcome = _handle_line(line, log) or outcome
        code = child.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _stop(child)
        code = child.returncode
    finally:
        try:
            child.stdin.close()
        except OSError:
            pass
    if outcome is not None and (outcome.ok or outcome.error_kind):
        return outcome
    tail = _tail(stderr_path)
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
    return ChildOutcome(False, error_kind="crash", error=f"training process {how}{tail}")


def _start(stderr_path: Path) -> subprocess.Popen[bytes]:
    """The child process, its stderr going to ``stderr_path``."""
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            close_fds=True,
            env=child_environment(),
            # Its own session: a Ctrl-C at the daemon's terminal goes to the daemon,
            # which then decides (finish or abandon) instead of the child dying mid-run.
            start_new_session=True,
        )


def _stdout_lines(child: subprocess.Popen[bytes]) -> queue_module.Queue[bytes | None]:
    """The child's stdout lines, read on a thread (None once it closes)."""
    lines: queue_module.Queue[bytes | None] = queue_module.Queue()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="worker-stdout", daemon=True).start()
    return lines


def _handle_line(line: bytes, log: Logger) -> ChildOutcome | None:
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
