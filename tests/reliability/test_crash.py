"""kill -9 at random moments of the daemon's life: nothing lost, doubled or broken."""

from __future__ import annotations

import time

from mlupdated.engine.predictor import Predictor

from tests.daemon.conftest import cli, predict, status
from tests.reliability.crash import CRASH_CONFIG, Campaign
from tests.reliability.harness import (
    corrections_by_sha,
    make_workspace,
    model_problems,
    queue_problems,
    scale,
    store_problems,
    temp_files,
    write_figures,
)

SEED = 20261125


def test_sigkill_campaign(tmp_path, small_model) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, **CRASH_CONFIG)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    campaign = Campaign(ws=ws, seed=SEED, scratch=scratch)
    kills = scale(50, 300)
    started = time.monotonic()
    while campaign.kills < kills:
        campaign.round()
        assert len(campaign.problems) == 0, campaign.problems

    daemon = campaign.settle()
    try:
        state = status(ws.root)
    finally:
        assert daemon.stop() == 0
    rows = corrections_by_sha(ws.root)
    problems = list(campaign.problems)
    problems += model_problems(ws.root, campaign.files[0])
    problems += store_problems(ws.root)
    problems += queue_problems(ws.root, campaign.dropped, known=campaign.known)
    figures = campaign.figures()
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["problems"] = len(problems)
    write_figures("crash", figures)

    assert problems == []
    assert temp_files(ws.root) == set()
    # None lost: every dropped file is a correction, pending or trained.
    assert set(campaign.dropped) == set(rows)
    assert figures["trained"] > 0, "no update survived: the campaign did not reach the swap"
    # The CLI sees what the database holds.
    assert state["trained"] == figures["trained"]
    assert sum(state["pending"].values()) == figures["pending"]
    # The live model answers through the CLI too, for files of both labels.
    sample = campaign.files[:: max(1, len(campaign.files) // 6)]
    labels = predict(ws.root, sample)
    assert len(labels) == len({p.name for p in sample})
    assert set(labels.values()) <= {"Cat", "Dog"}
    assert Predictor.from_path(ws.current_model, cache=False).predict_paths(sample)
    assert cli("status", "--workspace", str(ws.root)).returncode == 0
