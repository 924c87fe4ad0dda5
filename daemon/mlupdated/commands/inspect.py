"""``mlupdated inspect``: describe a model and check it for updates."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..coreml.describe import describe, format_description
from ..coreml.spec import load_spec
from .resolve import model_from_args


def run(args: argparse.Namespace) -> int:
    """Print the description of the resolved model (text, or one JSON object)."""
    return inspect_model(model_from_args(args), as_json=args.json)


def inspect_model(model_path: str | os.PathLike[str], *, as_json: bool) -> int:
    """Load the model, print its description, return 0.

    Load errors propagate (the CLI prints them in one line and exits 2).
    """
    spec = load_spec(model_path)
    info = describe(spec, path=model_path)
    if as_json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False, sort_keys=False) + "\n")
    else:
        sys.stdout.write(format_description(info) + "\n")
    sys.stdout.flush()
    return 0
