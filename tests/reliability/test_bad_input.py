"""Bad input dropped into a running daemon and given to ``mlupdated predict``: refused
with one clear line, or taken; never a crash, a hang or a file read outside."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

from tests.daemon.conftest import cli, make_photo
from tests.reliability.badinput import KINDS, outside_target
from tests.reliability.harness import make_workspace, read_db, write_figures

pytestmark = pytest.mark.slow

# No update during this test: it is about intake.
NO_UPDATES = {"update": {"min_batch": 1000}, "intake": {"rescan_seconds": 2}}


def _drop_all(ws, tmp_path):
    rng = np.random.default_rng(8)
    placed = {}
    for kind in KINDS:
        folder = ws.corrections / kind.folder
        folder.mkdir(exist_ok=True)
        path = folder / kind.filename
        kind.make(path, rng)
        placed[kind.name] = path
    return placed


def test_bad_inputs_in_a_running_daemon(tmp_path, small_model, daemons) -> None:
    ws = make_workspace(tmp_path / "ws", small_model, **NO_UPDATES)
    daemon = daemons(ws).start()
    placed = _drop_all(ws, tmp_path)
    rel = {name: str(path.relative_to(ws.root)) for name, path in placed.items()}

    outcomes = {}
    for kind in KINDS:
        path = rel[kind.name]
        if kind.expect == "queued":
            daemon.wait_for(event="correction queued", path=path, timeout=60)
        elif kind.expect == "refused":
            record = daemon.wait_for(event="not queued", path=path, timeout=60)
            assert record["reason"], kind.name
            outcomes[kind.name] = record["reason"]

    # The daemon still answers: a photo dropped after all of that is taken.
    sentinel = make_photo(ws.corrections / "Dog" / "after.png", "blue", 1)
    daemon.wait_for(event="correction queued", path=str(sentinel.relative_to(ws.root)))
    # Two more full rescans: ignored names stay ignored, refusals are not repeated.
    time.sleep(2.5 * NO_UPDATES["intake"]["rescan_seconds"])

    queued = {path for (path,) in read_db(ws.root, "SELECT path FROM correction_paths")}
    for kind in KINDS:
        path = rel[kind.name]
        refusals = daemon.find(event="not queued", path=path)
        assert (path in queued) == (kind.expect == "queued"), kind.name
        assert len(refusals) == (1 if kind.expect == "refused" else 0), (kind.name, refusals)
    # Every log line is one JSON record (a newline in a file name cannot split one).
    assert not [r for r in daemon.records if r.get("raw")]
    # Nothing outside the workspace was read into the database through a symlink.
    sym = placed["symlink to a file outside"]
    assert str(outside_target(sym)) not in json.dumps(read_db(ws.root, "SELECT * FROM errors"))
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    write_figures(
        "bad_input_daemon",
        {
            "kinds": len(KINDS),
            "queued": sum(k.expect == "queued" for k in KINDS),
            "refused": sum(k.expect == "refused" for k in KINDS),
            "ignored": sum(k.expect == "ignored" for k in KINDS),
            "daemon_crashes": 0,
            "refusal_reasons": outcomes,
        },
    )


def test_bad_inputs_through_predict(tmp_path, small_model) -> None:
    ws = make_workspace(tmp_path / "ws", small_model)
    placed = _drop_all(ws, tmp_path)
    kinds = [k for k in KINDS if k.predict is not None]
    paths = [placed[k.name] for k in kinds]
    done = cli("predict", "--model", str(small_model), "--json", *map(str, paths), timeout=120)
    assert done.returncode == 1, done.stderr  # some failed, all were answered
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(kinds)
    answers = {line["path"]: line for line in lines}
    for kind, path in zip(kinds, paths, strict=True):
        answer = answers[str(path)]
        if kind.predict == "label":
            assert answer.get("label") in {"Cat", "Dog"}, (kind.name, answer)
            assert np.isclose(sum(answer["probabilities"].values()), 1.0, atol=1e-4)
        else:
            assert answer.get("error"), (kind.name, answer)
            assert "\n" not in answer["error"]
    write_figures("bad_input_predict", {"kinds": len(kinds), "crashes": 0})


HIDE_HEIF = (
    "import sys; sys.modules['pillow_heif'] = None; "
    "from mlupdated.cli import main; sys.argv[0] = 'mlupdated'; sys.exit(main())"
)


def test_heic_without_a_decoder(tmp_path, small_model) -> None:
    rng = np.random.default_rng(1)
    heic = next(k for k in KINDS if k.name == "heic")
    jpeg = next(k for k in KINDS if k.name == "jpeg named .HEIC")
    photo, lie = tmp_path / heic.filename, tmp_path / jpeg.filename
    heic.make(photo, rng)
    jpeg.make(lie, rng)
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            HIDE_HEIF,
            "predict",
            "--model",
            str(small_model),
            "--json",
            str(photo),
            str(lie),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    answers = {json.loads(x)["path"]: json.loads(x) for x in done.stdout.splitlines()}
    assert "pillow-heif" in answers[str(photo)]["error"]
    # Sniffed by content: a JPEG named .HEIC needs no HEIC decoder.
    assert answers[str(lie)]["label"] in {"Cat", "Dog"}
