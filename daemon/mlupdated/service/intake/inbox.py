"""The inbox: classify new photos with the current model and keep the answer.

Intake hands over each complete inbox file with its content hash; a worker thread
classifies it with ``models/current.mlmodel`` and records the prediction in the
database and as one JSON line in ``predictions.jsonl``. A content that already has a
prediction (from any model version) is not classified again: a swap never silently
changes an answer the owner may already have acted on.

The model stays loaded while photos arrive; after ``IDLE_RELEASE_SECONDS`` without one
it is dropped and its memory handed back (the next photo loads it again from the graph
cache): a daemon at rest should not hold an inference session it is not using.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...engine.familiarity import familiarity, familiarity_threshold
from ...engine.runtime import release_memory
from ...errors import MlupdatedError

if TYPE_CHECKING:
    from ..config import Config
    from ..queue import Queue
    from ..store import ModelStore
    from ..workspace import Workspace

STOP = None
# A photo that met no usable model (the store being repaired) is tried again this often.
HOLD_RETRY_SECONDS = 5.0
# Long enough to keep the model across the gaps of a burst (intake hands photos over
# one by one as each is complete), short enough that an idle daemon is small.
IDLE_RELEASE_SECONDS = 10.0


class InboxClassifier:
    """Classifies inbox files in a background thread (``submit`` never blocks)."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        queue: Queue,
        store: ModelStore,
        log: Any,
        config: Callable[[], Config] | None = None,
        idle_release_seconds: float = IDLE_RELEASE_SECONDS,
    ) -> None:
        """``config`` returns the daemon's current config: its ``intake.max_pixels`` and
        ``intake.resize`` decode inbox photos as intake checked them. The model is
        dropped after ``idle_release_seconds`` without a photo."""
        self._ws = workspace
        self._config = config
        self._queue = queue
        self._store = store
        self._log = log
        self._items: queue_module.Queue[tuple[Path, str] | None] = queue_module.Queue()
        self._thread: threading.Thread | None = None
        self._predictor: Any = None
        self._predictor_version: int | None = None
        self._lock = threading.Lock()
        self._held: list[tuple[Path, str]] = []
        self._retry_at = 0.0
        self._said: set[str] = set()
        self._idle_release = idle_release_seconds

    @property
    def loaded(self) -> bool:
        """True while a model is loaded (between a photo and the idle release)."""
        return self._predictor is not None

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._loop, name="inbox", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Finish the file in hand and stop."""
        if self._thread is None:
            return
        self._items.put(STOP)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, path: Path, sha256: str) -> None:
        """Queue one complete inbox file (called from intake's thread)."""
        self._items.put((Path(path), sha256))

    def _loop(self) -> None:
        while True:
            try:
                item = self._items.get(timeout=self._idle_release if self.loaded else None)
            except queue_module.Empty:
                self.release()
                continue
            if item is STOP:
                return
            try:
                self.classify(*item)
            except Exception as exc:  # one bad file or a model problem must not stop the inbox
                self._log.warning("inbox: not classified", path=str(item[0]), reason=str(exc))

    def classify(self, path: Path, sha256: str) -> dict[str, Any] | None:
        """Classify one file unless its content was classified before; return the record."""
        absolute = Path(path) if Path(path).is_absolute() else Path(self._ws.root) / path
        relative = _relative(absolute, Path(self._ws.root))
        earlier = self._queue.prediction_for(sha256)
        if earlier is not None:
            if earlier["path"] != relative:
                # One answer per content (README: the same photo twice counts once); the
                # second name is not silent either.
                self._log.info(
                    f"inbox: {relative} is the same image as {earlier['path']}, classified "
                    f"{earlier['label']} by version {earlier['version']}; not classified again",
                    path=relative,
                    same_as=earlier["path"],
                    label=earlier["label"],
                    version=earlier["version"],
                )
            return None
        try:
            version, predictor = self._current_predictor()
        except MlupdatedError as exc:  # the store's fault, not the photo's: wait for it
            self._hold(path, sha256, exc)
            return None
        intake = self._config().intake if self._config is not None else None
        # Decoded as intake checked it: a photo intake accepted (its pixel limit may be
        # raised above the default) is never refused here, and is fitted as training fits it.
        (result,) = predictor.predict_paths(
            [path],
            resize=intake.resize if intake is not None else "scaleFill",
            max_pixels=intake.max_pixels if intake is not None else None,
        )
        probabilities = getattr(result, "probabilities", None)
        if probabilities is None:
            reason = str(getattr(result, "error", "unreadable"))
            self._log.warning("inbox: not classified", path=relative, reason=reason)
            self._queue.record_error("inbox", relative, reason)
            return None
        probs = {str(k): float(v) for k, v in probabilities.items()}
        return self._record(relative, sha256, result, probs, predictor, version)

    def _record(
        self,
        relative: str,
        sha256: str,
        result: Any,
        probs: dict[str, float],
        predictor: Any,
        version: int,
    ) -> dict[str, Any]:
        """Keep one answer: in the database, as a line of ``predictions.jsonl``, in the log."""
        label = str(result.label)
        signal = familiarity(result.outputs, familiarity_threshold(predictor.spec))
        self._queue.record_prediction(
            path=relative, sha256=sha256, label=label, probabilities=probs, version=version
        )
        record = {
            "path": relative,
            "sha256": sha256,
            "label": label,
            "probabilities": probs,
            "version": version,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if signal is not None:
            record["familiarity"] = round(signal.score, 4)
            record["neither"] = signal.neither
        _append_line(Path(self._ws.predictions_log), json.dumps(record))
        if signal is not None and signal.neither:
            self._log.info(
                "inbox: looks like neither",
                path=relative,
                labels=sorted(probs),
                familiarity=round(signal.score, 4),
                threshold=signal.threshold,
                version=version,
            )
        else:
            self._log.info("inbox: classified", path=relative, label=label, version=version)
        return record

    def _hold(self, path: Path, sha256: str, exc: MlupdatedError) -> None:
        with self._lock:
            self._held.append((Path(path), sha256))
            self._retry_at = time.monotonic() + HOLD_RETRY_SECONDS
            said = sha256 in self._said
            self._said.add(sha256)
        if not said:  # once per photo, not at every retry
            self._log.warning(
                "inbox: not classified yet; waiting for a usable model",
                path=str(path),
                reason=str(exc),
            )

    def retry_held(self) -> int:
        """Queue again the photos that waited for a usable model (the daemon calls this
        after each store check that found the store readable); returns how many."""
        with self._lock:
            if not self._held or time.monotonic() < self._retry_at:
                return 0
            held, self._held = self._held, []
        for item in held:
            self._items.put(item)
        return len(held)

    def resubmit_unclassified(self) -> int:
        """Queue the inbox photos taken before but never classified (they waited for a
        usable model when the daemon stopped); returns how many."""
        count = 0
        for rel, (_size, _mtime, sha256) in self._queue.seen_files().items():
            if not rel.startswith("inbox/") or self._queue.prediction_for(sha256) is not None:
                continue
            path = Path(self._ws.root) / rel
            if path.is_file():
                self.submit(path, sha256)
                count += 1
        return count

    def release(self) -> bool:
        """Drop the loaded model and hand its memory back; False when none was loaded."""
        with self._lock:
            if self._predictor is None:
                return False
            version = self._predictor_version
            self._predictor, self._predictor_version = None, None
        release_memory()
        self._log.debug("inbox: model released while idle", version=version)
        return True

    def _current_predictor(self) -> tuple[int, Any]:
        from ...engine.predictor import Predictor

        with self._lock:
            version = self._store.current_version()
            if self._predictor is None or version != self._predictor_version:
                # The version's own file, not current.mlmodel: a swap replaces that
                # file before the manifest names the new version, and an answer must
                # carry the version that really gave it.
                path = Path(self._store.version_path(version))
                if not path.is_file():
                    path = Path(self._ws.current_model)
                try:
                    self._predictor = Predictor.from_path(path)
                except MlupdatedError:
                    self._predictor = None
                    raise
                self._predictor_version = version
            return version, self._predictor


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _append_line(path: Path, line: str) -> None:
    # One write() of a short line on an O_APPEND descriptor: concurrent appenders and
    # readers see whole lines; fsync so an acknowledged prediction survives a power cut.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
