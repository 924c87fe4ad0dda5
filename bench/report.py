"""The results as a terminal table and as ``docs/benchmarks.md``.

The Markdown file is rewritten on every run, except the block between
``ANALYSIS_START`` and ``ANALYSIS_END``: that is written by hand (why a target is
missed, what the numbers mean) and carried over from the previous file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import Section

ANALYSIS_START = "<!-- analysis: written by hand, kept by python -m bench -->"
ANALYSIS_END = "<!-- end of analysis -->"
DEFAULT_ANALYSIS = "(No analysis written yet.)"


def terminal(sections: Sequence[Section], facts: dict[str, str]) -> str:
    """Plain-text tables of every section and the targets."""
    lines = [", ".join(f"{k}: {v}" for k, v in facts.items()), ""]
    for section in sections:
        lines.append(section.title)
        lines += _aligned([section.header, *section.rows])
        lines.append("")
    targets = [t for s in sections for t in s.targets]
    if targets:
        lines.append("Targets")
        rows = [
            (t.name, t.goal, t.measured, "met" if t.met else f"MISSED {t.shortfall}".strip())
            for t in targets
        ]
        lines += _aligned([("target", "goal", "measured", "result"), *rows])
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]


def markdown(
    sections: Sequence[Section], facts: dict[str, str], *, command: str, analysis: str
) -> str:
    """The whole ``docs/benchmarks.md``."""
    out = [
        "# Benchmarks",
        "",
        "mlupdated side by side with what a user would otherwise run. Every ratio compares "
        "things measured in the same run, interleaved (A, B, A, B, …), medians reported. "
        "Written by:",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine",
        "",
        "| fact | value |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in facts.items()),
        "",
    ]
    targets = [t for s in sections for t in s.targets]
    if targets:
        out += [
            "## Targets",
            "",
            "| target | goal | measured | result |",
            "| --- | --- | --- | --- |",
            *(
                f"| {t.name} | {t.goal} | {t.measured} | "
                f"{'met' if t.met else ('**missed** ' + t.shortfall).strip()} |"
                for t in targets
            ),
            "",
        ]
    for section in sections:
        out += [f"## {section.title}", "", _md_table(section.header, section.rows), ""]
        for note in section.notes:
            out += [note, ""]
    out += ["## Analysis", "", ANALYSIS_START, analysis.strip(), ANALYSIS_END, ""]
    return "\n".join(out)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def previous_analysis(path: Path) -> str:
    """The hand-written block of an existing file (or the placeholder)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_ANALYSIS
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return DEFAULT_ANALYSIS
    return text[start + len(ANALYSIS_START) : end].strip() or DEFAULT_ANALYSIS
