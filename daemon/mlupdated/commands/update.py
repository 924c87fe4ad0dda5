"""``mlupdated update``: the update task on a folder of ``<Label>/`` images.

Progress goes to stdout as one JSON object per event with ``--json``; to stderr as a
progress bar when stderr is a terminal; otherwise only a summary line at the end.
Images that could not be read are reported on stderr, one line each, and skipped.
The new model is written atomically to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..coreml.params import OVERRIDE_NAMES, update_parameters
from ..coreml.spec import KNN_KIND, class_labels, load_spec, save_spec, updatable_stage
from ..coreml.validate import check_updatable
from ..train.cache import FeatureCache
from ..train.data import list_folder
from ..train.task import (
    EPOCH_END,
    MINI_BATCH_END,
    UpdateEvent,
    UpdateResult,
    run_update,
    training_rows,
)
from .resolve import model_from_args

BAR_WIDTH = 30

# Command-line option → training parameter name (every parameter may be overridden).
OVERRIDE_OPTIONS = {option: name for name, option in OVERRIDE_NAMES.items()}


class _ProgressBar:
    """A one-line bar on a terminal, redrawn on every mini-batch."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.done = 0

    def __call__(self, event: UpdateEvent) -> None:
        if event.event != MINI_BATCH_END:
            return
        self.done += 1
        filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(
            f"\r[{bar}] epoch {event.epoch_index} batch {event.mini_batch_index} "
            f"loss {event.loss_value:.4f}"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _json_line(stream: TextIO, payload: dict[str, Any]) -> None:
    stream.write(json.dumps(payload) + "\n")
    stream.flush()


def run(args: argparse.Namespace) -> int:
    """Run ``mlupdated update`` on the resolved model."""
    model_path = Path(model_from_args(args))
    spec = load_spec(model_path)
    # A model Core ML would refuse is refused before the data folder is even listed.
    check_updatable(spec, path=model_path)
    stage = updatable_stage(spec)
    is_knn = stage is not None and stage.WhichOneof("Type") == KNN_KIND
    labels = class_labels(spec)
    if is_knn:
        labels = list(dict.fromkeys(labels))
    listing = list_folder(args.data, labels, allow_new_labels=is_knn)
    examples = listing.examples
    for path, reason in listing.not_files:
        print(f"mlupdated: skipped {path}: {reason}", file=sys.stderr)
    overrides = _overrides(args)
    cache_dir = getattr(args, "cache_dir", None)
    cache = FeatureCache(cache_dir) if cache_dir else FeatureCache()

    as_json = bool(getattr(args, "json", False))
    rehearse = bool(getattr(args, "rehearsal", True))
    progress, bar = _progress(
        spec, len(examples), overrides, as_json=as_json, is_knn=is_knn, rehearse=rehearse
    )
    try:
        result = run_update(
            spec,
            examples,
            overrides=overrides,
            progress=progress,
            cache=cache,
            path=model_path,
            resize=getattr(args, "resize", None) or "scaleFill",
            rehearse=rehearse,
        )
    finally:
        if bar is not None:
            bar.close()
    for skipped in result.examples_skipped:
        print(f"mlupdated: skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    out = save_spec(result.spec, args.out)
    _summary(model_path, result, out, not_files=len(listing.not_files), as_json=as_json)
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training parameters given on the command line."""
    return {
        name: getattr(args, option, None)
        for option, name in OVERRIDE_OPTIONS.items()
        if getattr(args, option, None) is not None
    }


def _progress(
    spec: Any,
    examples: int,
    overrides: dict[str, Any],
    *,
    as_json: bool,
    is_knn: bool,
    rehearse: bool,
) -> tuple[Callable[[UpdateEvent], None], _ProgressBar | None]:
    """Where progress goes: JSON lines, a bar on a terminal, or nowhere (and the bar
    to close, if any)."""
    bar: _ProgressBar | None = None
    if as_json:

        def progress(event: UpdateEvent) -> None:
            _json_line(sys.stdout, event.as_dict())
    elif sys.stderr.isatty() and not is_knn:
        values = update_parameters(spec).resolve(overrides)
        rows = training_rows(spec, examples, rehearse=rehearse)
        batches = math.ceil(rows / int(values["mini_batch_size"]))
        bar = _ProgressBar(sys.stderr, batches * int(values["epochs"]))
        progress = bar
    else:

        def progress(event: UpdateEvent) -> None:
            return None

    return progress, bar


def _summary(
    model_path: Path, result: UpdateResult, out: Path, *, not_files: int, as_json: bool
) -> None:
    """The last line: a ``completed`` JSON event, or a sentence."""
    count = result.examples_used
    skipped_count = len(result.examples_skipped) + not_files
    if as_json:
        _json_line(
            sys.stdout,
            {
                "event": "completed",
                "out": str(out),
                "examples": count,
                "skipped": skipped_count,
                "rehearsal": result.rehearsal_used,
            },
        )
    else:
        loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
        epochs = sum(1 for e in result.events if e.event == EPOCH_END)
        rehearsed = (
            f" and {result.rehearsal_used} rehearsal examples" if result.rehearsal_used else ""
        )
        print(
            f"updated {model_path} on {count} examples ({skipped_count} skipped){rehearsed}, "
            f"{epochs} epoch(s){loss}: wrote {out}"
        )
