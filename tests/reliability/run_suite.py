"""Run the reliability suites and write their figures as one JSON summary.

    python tests/reliability/run_suite.py            # CI mode (what CI runs)
    python tests/reliability/run_suite.py --long     # the long local mode

The summary (``--summary``, default ``reliability-summary.json`` in the current
folder) holds each suite's figures and the totals that docs/reliability.md quotes.
Extra arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LONG_ENV = "MLUPDATED_RELIABILITY_LONG"
SUMMARY_ENV = "MLUPDATED_RELIABILITY_SUMMARY"


def totals(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers from the per-suite figures."""
    crash = figures.get("crash", {})
    faults = figures.get("faults", {})
    clocks = [k for k in figures if k.startswith("clock: ")]
    bad = figures.get("bad_input_daemon", {})
    fuzz = figures.get("fuzz", {}).get("examples", {})
    return {
        "kills_survived": crash.get("kills", 0),
        "corrections_lost": crash.get("lost", 0),
        "invariant_problems": crash.get("problems", 0),
        "faults_tried": faults.get("tried", 0) + len(clocks),
        "bad_inputs_tried": bad.get("kinds", 0)
        + figures.get("bad_models", {}).get("models", 0)
        + 1  # + the huge sparse model
        + figures.get("bad_configs", {}).get("configs", 0),
        "fuzz_examples": sum(fuzz.values()),
        "files_in_burst": figures.get("burst", {}).get("files", 0),
        "swaps_under_reader": figures.get("swaps", {}).get("swaps", 0),
        "partial_reads": figures.get("swaps", {}).get("partial_reads", 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long local mode")
    parser.add_argument("--summary", default="reliability-summary.json", help="JSON output")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    summary = Path(args.summary).resolve()
    summary.unlink(missing_ok=True)
    env = {**os.environ, SUMMARY_ENV: str(summary), LONG_ENV: "1" if args.long else ""}
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", str(HERE), *args.pytest_args]
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    figures = json.loads(summary.read_text()) if summary.exists() else {}
    result = {
        "mode": "long" if args.long else "ci",
        "pytest_exit_code": code,
        "seconds": round(time.monotonic() - started, 1),
        "totals": totals(figures),
        "suites": figures,
    }
    summary.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result["totals"], indent=2))
    print(f"summary: {summary}")
    return code


if __name__ == "__main__":
    sys.exit(main())
