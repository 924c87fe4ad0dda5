"""``mlupdated predict``: classify images, or run a model on any inputs.

Images: one line per image on stdout (one JSON object with ``--json``); exit 1 if
any image failed. ``--input NAME=VALUE`` / ``--features FILE``: one line per example;
exit 1 if a line of the features file failed, while a bad ``--input`` is an error
(exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..coreml.features import example_from_pairs, examples_from_lines
from ..engine.familiarity import familiarity, familiarity_threshold
from ..engine.feature_command import (
    failure_line,
    finite_outputs,
    format_prediction,
    outputs_of,
    predict_example,
)
from ..engine.predictor import NON_FINITE_REASON, PredictionFailure, Predictor
from ..engine.report import format_result
from ..engine.threads import one_shot_threads
from ..errors import ConfigError, FeatureError, MlupdatedError
from .resolve import model_from_args


def run(args: argparse.Namespace) -> int:
    """Check the option combination, then predict images or feature examples."""
    if args.input or args.features is not None:
        if args.images:
            raise ConfigError("give IMAGE files, or --input/--features, not both")
        if args.input and args.features is not None:
            raise ConfigError("give --input or --features, not both")
        if args.out_dir is not None and not args.json:
            raise ConfigError("--out-dir needs --json")
        return predict_features(
            model_from_args(args),
            inputs=args.input or [],
            features_file=args.features,
            as_json=args.json,
            out_dir=args.out_dir,
            resize=args.resize,
        )
    if not args.images:
        raise ConfigError("give IMAGE files, --input NAME=VALUE or --features FILE")
    if args.out_dir is not None:
        raise ConfigError("--out-dir goes with --input or --features")
    return predict_images(
        model_from_args(args), [Path(p) for p in args.images], as_json=args.json, resize=args.resize
    )


def predict_images(
    model_path: Path, images: Sequence[Path], *, as_json: bool, resize: str = "scaleFill"
) -> int:
    """One line per image on stdout; 1 if any image failed.

    ``resize`` is how each image is fitted to the model's input (``RESIZE_MODES``).
    """
    predictor = Predictor.from_path(model_path, threads=one_shot_threads())
    threshold = familiarity_threshold(predictor.spec)
    results = predictor.predict_paths(images, resize=resize)
    failed = False
    for result in results:
        failed = failed or isinstance(result, PredictionFailure)
        signal = familiarity(getattr(result, "outputs", {}), threshold)
        print(format_result(result, as_json=as_json, signal=signal), flush=True)
    return 1 if failed else 0


def predict_features(
    model_path: Path,
    *,
    inputs: Sequence[str],
    features_file: str | None,
    as_json: bool,
    out_dir: str | None = None,
    resize: str = "scaleFill",
) -> int:
    """``--input ...`` or ``--features FILE``: 0 ok; 1 if a line of the features file
    failed. A bad ``--input`` raises ``FeatureError`` (exit 2)."""
    predictor = Predictor.from_path(model_path, threads=one_shot_threads())
    target = Path(out_dir) if out_dir is not None else None
    if features_file is None:
        example = example_from_pairs(predictor.spec, inputs, resize=resize)
        prediction = predict_example(predictor, example)
        if not finite_outputs(outputs_of(prediction)):
            raise FeatureError(NON_FINITE_REASON)
        print(format_prediction(prediction, as_json=as_json, where=None, out_dir=target))
        return 0
    lines = _read_lines(features_file)
    failed = False
    for number, example in examples_from_lines(predictor.spec, lines, resize=resize):
        where = str(number)
        if isinstance(example, FeatureError):
            failed = True
            print(failure_line(example.reason, as_json=as_json, where=where), flush=True)
            continue
        try:
            prediction = predict_example(predictor, example)
            if not finite_outputs(outputs_of(prediction)):
                raise FeatureError(NON_FINITE_REASON)
        except MlupdatedError as exc:
            failed = True
            print(failure_line(exc.reason, as_json=as_json, where=where), flush=True)
            continue
        print(format_prediction(prediction, as_json=as_json, where=where, out_dir=target))
    return 1 if failed else 0


def _read_lines(features_file: str) -> list[str]:
    try:
        if features_file == "-":
            return sys.stdin.read().splitlines()
        return Path(features_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise FeatureError(f"cannot read {features_file}: {reason}", path=None) from None
