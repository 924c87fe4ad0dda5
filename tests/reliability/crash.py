"""Crash injection: run the real daemon, feed it corrections, kill it with SIGKILL at
seeded random moments, restart it, and check after every kill that nothing was lost,
doubled or left broken.

Each round picks a phase to aim at (the daemon's own log lines say when it is in it):

- ``start-up``: files dropped while it is down; killed 0–2 s after the start (recovery,
  the start-up sweep, the redo of an interrupted run);
- ``intake``: files dropped while it watches; killed 0–1 s later (detect, stability
  wait, hashing, the queue write);
- ``training``: killed at a random moment of an update (child running, gate);
- ``version-write``: killed as soon as a new version file is stored (before the swap);
- ``swap``: killed inside the swap (the daemon's swap-delay test hook holds it there);
- ``after-promote``: killed right after the swap, before the corrections are marked.

Checks at every kill (the daemon is dead, the disk is what a restart will see):
``current.mlmodel`` parses and predicts; the database is intact; every row is a
dropped file under its label, pending or trained (or rejected after the gate refused it
``update.max_attempts`` times, with that reason); nothing once trained is pending
again or trained twice. Checks at every restart that reaches "ready": the temporary
files the kill left are gone and the manifest agrees with ``versions/``. At the end a
quiet run takes everything left; every dropped file is then pending or trained, and
``mlupdated status --json`` agrees with the database.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemon.conftest import DaemonProcess, Workspace, make_photo, sha256_of
from tests.reliability.harness import (
    corrections_by_sha,
    gate_gave_up,
    model_problems,
    queue_problems,
    read_db,
    store_problems,
    temp_files,
)

SWAP_DELAY_ENV = "MLUPDATED_TEST_SWAP_DELAY"
SWAP_DELAY = 0.5
PHASES = ("start-up", "intake", "training", "version-write", "swap", "after-promote")
# Cheap phases more often: they cost a start, the update phases a whole update.
WEIGHTS = (3, 3, 3, 2, 2, 2)
WAIT = 10.0
KIND_OF = {"Cat": "red", "Dog": "blue"}

CRASH_CONFIG = {
    "update": {"min_batch": 3, "quiet_seconds": 0.3, "epochs": 3},
    "intake": {"stability_seconds": 0.2},
    "store": {"keep_versions": 1000},
}


@dataclass
class Campaign:
    """State and figures of one crash campaign."""

    ws: Workspace
    seed: int
    scratch: Path
    rng: random.Random = field(init=False)
    dropped: dict[str, str] = field(default_factory=dict)  # sha256 → label
    files: list[Path] = field(default_factory=list)
    known: dict[str, tuple[int, str, str, int | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    phases: dict[str, int] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    ready_checks: int = 0
    temps_at_kills: int = 0
    duplicates: int = 0
    train_seconds: float = 2.0
    _photo: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # --- feeding ------------------------------------------------------------------------

    def drop(self, count: int) -> None:
        """``count`` new photos into random label folders; sometimes a byte copy too."""
        for _ in range(count):
            self._photo += 1
            label = self.rng.choice(sorted(KIND_OF))
            made = make_photo(
                self.scratch / f"p{self._photo}.png",
                KIND_OF[label],
                self.seed * 100000 + self._photo,
            )
            target = self.ws.corrections / label / f"photo-{self._photo:05d}.png"
            shutil.copyfile(made, self.scratch / "incoming.png")
            (self.scratch / "incoming.png").replace(target)  # arrives whole
            self.dropped[sha256_of(target)] = label
            self.files.append(target)
        if self.files and self.rng.random() < 0.2:
            # The same bytes again under another name: deduplicated, never counted twice.
            original = self.rng.choice(self.files)
            copy = original.with_name(f"copy-{self._photo:05d}-{original.name}")
            shutil.copyfile(original, self.scratch / "incoming.png")
            (self.scratch / "incoming.png").replace(copy)
            self.duplicates += 1

    # --- one round ----------------------------------------------------------------------

    def round(self) -> None:
        phase = self.rng.choices(PHASES, WEIGHTS)[0]
        self.phases[phase] = self.phases.get(phase, 0) + 1
        env = {SWAP_DELAY_ENV: str(SWAP_DELAY)} if phase == "swap" else None
        daemon = DaemonProcess(self.ws.root, env)
        temps_before = temp_files(self.ws.root)
        if phase == "start-up":
            self.drop(self.rng.randint(1, 3))
            daemon.start(wait_ready=False)
            time.sleep(self.rng.uniform(0.0, 2.0))
        else:
            if phase != "intake":
                self.drop(self.rng.randint(3, 5))
            daemon.start(wait_ready=False)
            hit = self._await(daemon, event="ready")
            if hit:
                self._after_ready(temps_before)
            if phase == "intake":
                self.drop(self.rng.randint(1, 3))
                time.sleep(self.rng.uniform(0.0, 1.0))
            elif hit:
                self._aim(daemon, phase)
        self._kill(daemon)

    def _aim(self, daemon: DaemonProcess, phase: str) -> None:
        if phase == "training":
            if self._await(daemon, event="update started"):
                time.sleep(self.rng.uniform(0.0, self.train_seconds))
                return
        elif phase == "version-write":
            if self._await(daemon, event="model version stored"):
                time.sleep(self.rng.uniform(0.0, 0.02))
                return
        elif phase == "swap":
            if self._await(daemon, event="test hook: delaying the swap"):
                time.sleep(self.rng.uniform(0.0, SWAP_DELAY))
                return
        elif phase == "after-promote" and self._await(daemon, event="model promoted"):
            return
        self.missed[phase] = self.missed.get(phase, 0) + 1

    def _await(self, daemon: DaemonProcess, **match: Any) -> bool:
        try:
            record = daemon.wait_for(timeout=WAIT, **match)
        except AssertionError:
            return False
        finished = daemon.find(event="update finished")
        if finished and finished[-1].get("seconds"):
            self.train_seconds = float(finished[-1]["seconds"])
        return record is not None

    def _after_ready(self, temps_before: set[Path]) -> None:
        self.ready_checks += 1
        left = temps_before & temp_files(self.ws.root)
        if left:
            self.problems.append(f"temporary files survived a restart: {sorted(map(str, left))}")
        # A version file written just now has its manifest entry a moment later.
        for _ in range(10):
            found = store_problems(self.ws.root)
            if not found:
                break
            time.sleep(0.2)
        self.problems += [f"after restart: {p}" for p in found]

    def _kill(self, daemon: DaemonProcess) -> None:
        if daemon.proc is not None and daemon.proc.poll() is not None:
            self.problems.append(f"daemon exited by itself with {daemon.proc.returncode}")
        else:
            daemon.kill9()
            self.kills += 1
        daemon.cleanup()
        (self.ws.root.parent / f"daemon-{daemon.pid}.log").unlink(missing_ok=True)
        self.temps_at_kills += len(temp_files(self.ws.root))
        probe = self.files[0] if self.files else None
        found = model_problems(self.ws.root, probe) if probe else []
        if (self.ws.root / "state" / "mlupdated.db").exists():
            found += queue_problems(self.ws.root, self.dropped, known=self.known)
            self.known = corrections_by_sha(self.ws.root)
        self.problems += [f"after kill {self.kills}: {p}" for p in found]

    # --- the end ------------------------------------------------------------------------

    def settle(self, *, timeout: float = 120.0) -> DaemonProcess:
        """A final quiet run until every file is queued and no update is due or running."""
        daemon = DaemonProcess(self.ws.root)
        temps_before = temp_files(self.ws.root)
        daemon.start()
        self._after_ready(temps_before)
        min_batch = CRASH_CONFIG["update"]["min_batch"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = corrections_by_sha(self.ws.root)
            open_runs = read_db(self.ws.root, "SELECT count(*) FROM runs WHERE finished IS NULL")
            pending = sum(1 for r in rows.values() if r[2] == "pending")
            if set(self.dropped) <= set(rows) and open_runs[0][0] == 0 and pending < min_batch:
                break
            time.sleep(0.5)
        return daemon

    def figures(self) -> dict[str, Any]:
        rows = corrections_by_sha(self.ws.root)
        states = [r[2] for r in rows.values()]
        return {
            "seed": self.seed,
            "kills": self.kills,
            "kills_by_phase": dict(sorted(self.phases.items())),
            "phase_not_reached_before_kill": dict(sorted(self.missed.items())),
            "restarts_checked_at_ready": self.ready_checks,
            "corrections_dropped": len(self.dropped),
            "byte_copies_dropped": self.duplicates,
            "corrections_in_db": len(rows),
            "trained": states.count("trained"),
            "pending": states.count("pending"),
            "rejected_by_gate": len(gate_gave_up(self.ws.root)),
            "lost": len(set(self.dropped) - set(rows)),
            "temp_files_seen_at_kills": self.temps_at_kills,
            "problems": len(self.problems),
        }
