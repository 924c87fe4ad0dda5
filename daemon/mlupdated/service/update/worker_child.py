"""The training child: ``python -m mlupdated.service.update.worker_child``.

The daemon (:class:`mlupdated.service.update.UpdateRunner`) starts this module in a
process of its own and writes one JSON job on its stdin. The child loads the current
model, runs ``train.task.run_update``, writes the candidate to the path it was given,
evaluates current and candidate on the evaluation examples (the gate's numbers), and
prints one JSON object per line: progress events, then a ``result`` or an ``error``.
It exits by itself when its stdin closes, so a daemon killed with -9 leaves no trainer
behind.

Faults a test may ask for (``crash``, ``hang``, ``nan``, ``diverge``) come through
:func:`mlupdated.faults.worker_fault`. They act before the heavy imports, so a test
of a crash or a hang does not wait for NumPy and the Core ML protobufs to load.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ... import faults

FAULT_ENV = faults.WORKER_FAULT_ENV
# Exit statuses: an uncaught failure before main() returned, and stdin closed under us.
EXIT_UNEXPECTED = 70
EXIT_ORPHANED = 3


def _emit(message_type: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"type": message_type, **fields}, default=str) + "\n")
    sys.stdout.flush()


def _exit_when_orphaned() -> None:
    # The daemon holds our stdin open for as long as it wants us; EOF means it is gone.
    sys.stdin.buffer.read()
    os._exit(EXIT_ORPHANED)


def _poison(spec: Any) -> None:
    from ...coreml.spec import updatable_stage
    from ...coreml.weights import decode_weights, replace_weights
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
    fault = faults.worker_fault()
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        _emit("progress", event="trainingBegin", note="test hook: hanging")
        while True:
            time.sleep(3600)
    # Heavy imports only after the hooks: a test of a crash or a hang must not wait for
    # NumPy and the Core ML protobufs to load on a busy machine.
    from ...errors import DivergedError

    if fault == "diverge":
        raise DivergedError("test hook: training diverged (non-finite loss)")
    from ...coreml.spec import class_labels, load_spec, save_spec
    from ...train.cache import FeatureCache
    from ...train.task import run_update

    spec = load_spec(job["model"])
    # The queue keeps labels as folder names; a model may label its classes with ints.
    labels = {str(label): label for label in class_labels(spec)}
    pairs = [(Path(p), labels.get(label, label)) for p, label in job["examples"]]
    examples, unreadable = training_examples(
        spec, pairs, resize=job["resize"], max_pixels=job.get("max_pixels")
    )

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
        rehearse=bool(job.get("rehearse", True)),
    )
    if fault == "nan":
        _poison(result.spec)
    save_spec(result.spec, job["out"])
    _report(job, result, unreadable)


def _report(job: dict[str, Any], result: Any, unreadable: list[list[str]]) -> None:
    """Evaluate current and candidate on the evaluation examples (the gate's numbers)
    and emit the ``result`` line."""
    from . import gate as gate_module

    evaluation = [(p, label) for p, label in job["evaluate"]]
    decoding = {"resize": job["resize"], "max_pixels": job.get("max_pixels")}
    current = gate_module.evaluate(Path(job["model"]), evaluation, **decoding)
    candidate = gate_module.evaluate(Path(job["out"]), evaluation, **decoding)
    skipped = result.examples_skipped
    reported = [[str(s.source), s.reason] for s in skipped] if isinstance(skipped, list) else []
    _emit(
        "result",
        examples_used=_count(result.examples_used),
        examples_skipped=_count(skipped) + len(unreadable),
        rehearsal_used=_count(getattr(result, "rehearsal_used", 0)),
        skipped=unreadable + reported,
        final_loss=result.final_loss,
        parameters_used=result.parameters_used,
        current=current.to_dict(),
        candidate=candidate.to_dict(),
    )


def training_examples(
    spec: Any,
    pairs: list[tuple[Path, Any]],
    *,
    resize: str,
    max_pixels: int | None,
    engine_limit: int | None = None,
) -> tuple[list[Any], list[list[str]]]:
    """The training examples for (path, label) pairs, and [path, reason] of those that
    cannot be read.

    Training decodes files with the engine's default pixel limit (``engine_limit``,
    default ``DEFAULT_MAX_PIXELS``). When ``intake.max_pixels`` is above it, a photo
    intake accepted could be refused here: such a photo (by its header) is decoded
    now with the configured limit and given to training as pixels. Every other one
    stays a file, so the feature cache still skips its decode.
    """
    from ...coreml.images import DEFAULT_MAX_PIXELS, image_input, load_tensor
    from ...errors import ImageError
    from ...train.data import Example

    limit = DEFAULT_MAX_PIXELS if engine_limit is None else engine_limit
    feature = image_input(spec)
    if max_pixels is None or max_pixels <= limit or feature is None:
        # Training's limit is at least intake's: whatever intake accepted decodes.
        return [Example(path, label) for path, label in pairs], []
    examples: list[Any] = []
    unreadable: list[list[str]] = []
    for path, label in pairs:
        if _pixels(path) <= limit:
            examples.append(Example(path, label))
            continue
        try:
            tensor = load_tensor(path, feature.type.imageType, resize=resize, max_pixels=max_pixels)
        except ImageError as exc:
            unreadable.append([str(path), exc.reason])
            continue
        examples.append(Example(tensor, label))
    return examples, unreadable


def _pixels(path: Path) -> int:
    """Width × height from the image header (0 when Pillow cannot tell: training's own
    decoder then reports the file)."""
    from PIL import Image

    # This process decodes nothing else meanwhile: Pillow's own bomb check (which would
    # refuse to even read such a header) is lifted for the header read alone.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # any reason Pillow cannot read the header
        return 0
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return width * height


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple | set) else int(value or 0)


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None))


def main() -> int:
    """Read the job from stdin, run it, report on stdout; returns the exit status."""
    line = sys.stdin.buffer.readline()
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    try:
        _child(json.loads(line))
    except Exception as exc:
        _emit("error", kind=type(exc).__name__, message=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    code = EXIT_UNEXPECTED
    try:
        code = main()
    finally:
        sys.stdout.flush()
        # Leave without interpreter finalisation: the orphan watcher still blocks in a
        # read of stdin, and finalising under it aborts the process.
        os._exit(code)
