"""Shared pieces of the reliability suites: workspaces, read-only database views and the
invariants every suite checks after it has hurt the daemon.

The daemon itself is driven through ``tests.daemon.conftest`` (the end-to-end harness
of the daemon's own tests): the real ``mlupdated run`` process, its JSON log lines,
and the CLI. This module adds what the reliability suites need on top: a long mode,
figures for the summary, and checks that read the workspace the way a user's other
programs would (the model file, the manifest, the SQLite file opened read-only).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlupdated.coreml.spec import load_spec
from mlupdated.engine.predictor import Predictor
from mlupdated.fsutil import TEMP_PREFIX
from mlupdated.service.queue.corrections import GATE_GAVE_UP
from mlupdated.service.workspace import init_workspace

from tests.daemon.conftest import TEST_CONFIG, Workspace, toml_text

LONG_ENV = "MLUPDATED_RELIABILITY_LONG"
SUMMARY_ENV = "MLUPDATED_RELIABILITY_SUMMARY"

# States a correction may be in while its file is still in its label folder.
LIVE_STATES = {"pending", "trained"}
# A correction the gate refused update.max_attempts times ends rejected, with a reason
# that starts with GATE_GAVE_UP: decided and accounted for, not lost. Any other
# rejection is a problem here.


def long_mode() -> bool:
    """True when the long (local) mode was asked for."""
    return os.environ.get(LONG_ENV, "") not in ("", "0")


def scale(ci: int, long: int) -> int:
    """The CI figure, or the long-mode one."""
    return long if long_mode() else ci


def make_workspace(root: Path, model_path: Path, **sections: dict[str, Any]) -> Workspace:
    """A fresh workspace around ``model_path`` with the fast test config plus ``sections``."""
    init_workspace(root, model_path=model_path)
    config = {name: dict(values) for name, values in TEST_CONFIG.items()}
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    (root / "config.toml").write_text(toml_text(config))
    return Workspace(root)


def read_db(root: Path, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the workspace database, opened read-only (never writes)."""
    db = root / "state" / "mlupdated.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(query, tuple(params)))
    finally:
        conn.close()


def corrections_by_sha(root: Path) -> dict[str, tuple[int, str, str, int | None]]:
    """sha256 → (id, label, state, version) for every correction in the database."""
    rows = read_db(root, "SELECT sha256, id, label, state, version FROM corrections")
    return {sha: (cid, label, state, version) for sha, cid, label, state, version in rows}


def gate_gave_up(root: Path) -> list[int]:
    """Ids of the corrections that ended rejected because the gate kept refusing them."""
    rows = read_db(root, "SELECT id, reason FROM corrections WHERE state = 'rejected'")
    return [cid for cid, reason in rows if (reason or "").startswith(GATE_GAVE_UP)]


def manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "models" / "manifest.json").read_text())


def version_files(root: Path) -> set[int]:
    versions = root / "models" / "versions"
    return {int(p.name.split(".")[0]) for p in versions.glob("[0-9]*.mlmodel")}


def temp_files(root: Path) -> set[Path]:
    """Leftover atomic-write temporaries anywhere in the workspace (the training cache
    included: the daemon removes a killed child's half-written entries at start-up)."""
    return set(root.rglob(f"{TEMP_PREFIX}*"))


def model_problems(root: Path, probe: Path) -> list[str]:
    """``current.mlmodel`` must parse and predict ``probe``."""
    current = root / "models" / "current.mlmodel"
    try:
        load_spec(current)
        results = Predictor.from_path(current, cache=False).predict_paths([probe])
    except Exception as exc:  # any failure here is what the suites look for
        return [f"current.mlmodel unusable: {type(exc).__name__}: {exc}"]
    if len(results) != 1 or not results[0].label:
        return [f"current.mlmodel predicted nothing for {probe.name}"]
    return []


def store_problems(root: Path) -> list[str]:
    """The manifest agrees with ``versions/`` and names the live model."""
    problems = []
    data = manifest(root)
    listed = {int(e["version"]) for e in data["versions"]}
    files = version_files(root)
    if listed != files:
        problems.append(f"manifest lists {sorted(listed)} but versions/ holds {sorted(files)}")
    if data["current"] not in listed:
        problems.append(f"manifest current {data['current']} is not a listed version")
    return problems


def queue_problems(
    root: Path,
    dropped: dict[str, str],
    *,
    known: dict[str, tuple[int, str, str, int | None]] | None = None,
) -> list[str]:
    """Corrections in the database against what was dropped (``sha256 → label``).

    No phantom rows, every row in a live state under the label it was dropped with, a
    trained correction names a promoted version, no correction was promoted twice, and
    — given ``known``, the rows of an earlier check — nothing known vanished or went
    back from trained to pending (that would train it twice).
    """
    problems = []
    integrity = read_db(root, "PRAGMA integrity_check")
    if integrity != [("ok",)]:
        problems.append(f"database integrity: {integrity}")
    rows = corrections_by_sha(root)
    gave_up = set(gate_gave_up(root))
    promoted = {
        int(e["version"]): e for e in manifest(root)["versions"] if e.get("promoted", False)
    }
    for sha, (cid, label, state, version) in rows.items():
        if sha not in dropped:
            problems.append(f"correction {cid} was never dropped")
            continue
        if label != dropped[sha]:
            problems.append(f"correction {cid}: label {label}, dropped as {dropped[sha]}")
        if state not in LIVE_STATES and cid not in gave_up:
            problems.append(f"correction {cid} is {state}")
        if state == "trained" and version not in promoted:
            problems.append(f"correction {cid} trained into unpromoted version {version}")
    seen_in: dict[int, list[int]] = {}
    for version, entry in promoted.items():
        for cid in (entry.get("corrections") or {}).get("ids") or []:
            seen_in.setdefault(int(cid), []).append(version)
    for cid, versions in seen_in.items():
        if len(versions) > 1:
            problems.append(f"correction {cid} trained into versions {versions}")
    for sha, (cid, _label, state, version) in (known or {}).items():
        now = rows.get(sha)
        if now is None:
            problems.append(f"correction {cid} vanished from the database")
        elif state == "trained" and (now[2] != "trained" or now[3] != version):
            problems.append(f"correction {cid} was trained into {version}, now {now[2:]}")
    return problems


def world_writable(root: Path) -> list[str]:
    """Paths under ``root`` (not followed through symlinks) that anyone may write."""
    found = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if not path.is_symlink() and info.st_mode & 0o002:
            found.append(str(path.relative_to(root)))
    return found


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident set (or ``VmHWM``, its peak) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def write_figures(section: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` under ``section`` into the summary file, when one was asked for."""
    target = os.environ.get(SUMMARY_ENV)
    if not target:
        return
    path = Path(target)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = figures
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
