"""What the daemon says when people touch the workspace: one clear line each."""

from __future__ import annotations

import json
import shutil
import signal
import time
import unicodedata

from mlupdated.coreml.spec import save_spec
from mlupdated.service.workspace import init_workspace

from tests.daemon.conftest import (
    IMAGE_SIZE,
    Workspace,
    cli,
    make_photo,
    status,
    wrong_photos,
)
from tests.helpers.updatable_specs import build_updatable_spec


def test_the_same_photo_in_two_label_folders_is_a_conflict(workspace, daemons) -> None:
    workspace.write_config(intake={"rescan_seconds": 1})
    daemon = daemons(workspace).start()
    cat = make_photo(workspace.corrections / "Cat" / "x.png", "red", 7)
    daemon.wait_for(event="correction queued", path="corrections/Cat/x.png")
    shutil.copy2(cat, workspace.corrections / "Dog" / "x.png")
    line = daemon.wait_for(event="conflict: corrections/Dog/x.png (Dog)")
    assert "corrections/Cat/x.png" in line["event"] and line["label"] == "Dog"
    time.sleep(2.5)  # rescans go over both copies again: still one line
    assert len(daemon.find(event="conflict:")) == 1
    state = status(workspace.root)
    assert state["conflicts"] == [
        {"label": "Dog", "paths": {"corrections/Cat/x.png": "Cat", "corrections/Dog/x.png": "Dog"}}
    ]
    text = cli("status", "--workspace", str(workspace.root)).stdout
    assert "conflict:  one image under several labels" in text
    # Moving a photo between folders is a relabel, not a conflict.
    make_photo(workspace.corrections / "Cat" / "y.png", "red", 8)
    daemon.wait_for(event="correction queued", path="corrections/Cat/y.png")
    mark = daemon.mark()
    (workspace.corrections / "Cat" / "y.png").rename(workspace.corrections / "Dog" / "y.png")
    daemon.wait_for(event="relabelled: corrections/Dog/y.png", since=mark)
    assert not daemon.find(event="conflict:", since=mark)
    assert daemon.stop() == 0


def test_deleting_a_trained_correction_is_said(workspace, daemons, tmp_path) -> None:
    workspace.write_config(update={"min_batch": 1})
    label, (photo,) = wrong_photos(workspace, tmp_path / "camera", count=1)
    daemon = daemons(workspace).start()
    dropped = workspace.corrections / label / photo.name
    shutil.copy2(photo, dropped)
    finished = daemon.wait_for(event="update finished", timeout=90)
    assert finished["outcome"] == "promoted", finished.get("reason")
    mark = daemon.mark()
    dropped.unlink()
    line = daemon.wait_for(event="trained correction deleted", since=mark)
    assert line["path"] == f"corrections/{label}/{photo.name}" and line["version"] == 2
    assert "learned by model version 2" in line["event"]
    assert status(workspace.root)["trained"] == 1
    assert daemon.stop() == 0


def test_sighup_after_the_config_was_deleted_says_defaults_apply(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    (workspace.root / "config.toml").unlink()
    mark = daemon.mark()
    daemon.signal(signal.SIGHUP)
    line = daemon.wait_for(event="config reloaded", since=mark)
    assert line["event"].endswith("config.toml is missing; defaults applied")
    assert line["level"] == "warning" and line["min_batch"] == 10
    assert daemon.stop() == 0


def test_the_same_photo_twice_in_the_inbox_is_said_once(workspace, daemons) -> None:
    daemon = daemons(workspace).start()
    first = make_photo(workspace.root / "inbox" / "a.png", "red", 11)
    daemon.wait_for(event="inbox: classified", path="inbox/a.png")
    shutil.copy2(first, workspace.root / "inbox" / "b.png")
    line = daemon.wait_for(event="inbox: inbox/b.png is the same image as inbox/a.png")
    assert line["same_as"] == "inbox/a.png" and line["version"] == 1
    assert "not classified again" in line["event"]
    lines = (workspace.root / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["path"] for x in lines] == ["inbox/a.png"]
    assert daemon.stop() == 0


def test_a_decomposed_unicode_label_folder_is_matched(tmp_path, daemons) -> None:
    label = "Caf\u00e9"  # as the model says it: composed (NFC)
    spec = build_updatable_spec(
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        conv_channels=4,
        hidden=8,
        classes=(label, "Dog"),
        weight_seed=3,
    )
    model = tmp_path / "cafe.mlmodel"
    save_spec(spec, model)
    init_workspace(tmp_path / "ws", model_path=model)
    workspace = Workspace(tmp_path / "ws")
    workspace.write_config()
    daemon = daemons(workspace).start()
    decomposed = unicodedata.normalize("NFD", label)
    assert decomposed != label
    make_photo(workspace.corrections / decomposed / "p.png", "red", 21)
    queued = daemon.wait_for(event="correction queued", path=f"corrections/{decomposed}/p.png")
    assert queued["label"] == label
    note = daemon.wait_for(event="decomposed (NFD) Unicode")
    assert note["folder"] == decomposed and note["label"] == label
    assert not daemon.find(event="not queued")
    assert status(workspace.root)["pending"] == {label: 1}
    assert daemon.stop() == 0
