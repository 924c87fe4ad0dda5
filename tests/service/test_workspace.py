"""Workspace init: the layout, idempotence, and refusing what is not ours."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlupdated.commands.init import run as run_init_command
from mlupdated.commands.resolve import workspace_root as workspace_root_from_args
from mlupdated.errors import ModelNotFoundError, ModelParseError, WorkspaceError
from mlupdated.service.config import DEFAULT_CONFIG_TEXT
from mlupdated.service.store import ModelStore
from mlupdated.service.workspace import Workspace, init_workspace, open_workspace

from tests.helpers.updatable_specs import build_updatable_spec


def _model(tmp_path: Path, name: str = "model.mlmodel", **options: object) -> Path:
    path = tmp_path / name
    path.write_bytes(build_updatable_spec(**options).SerializeToString())
    return path


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below root with its size and mtime (to prove nothing changed)."""
    result = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        result[path.relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns)
    return result


def test_layout(tmp_path: Path) -> None:
    model = _model(tmp_path)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    assert ws.config_path.read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT
    assert ws.inbox.is_dir() and ws.state.is_dir()
    assert sorted(p.name for p in ws.corrections.iterdir()) == ["Cat", "Dog"]
    assert ws.current_model.read_bytes() == model.read_bytes()
    assert (ws.versions / "0001.mlmodel").read_bytes() == model.read_bytes()
    manifest = json.loads(ws.manifest.read_text(encoding="utf-8"))
    assert manifest["current"] == 1
    (entry,) = manifest["versions"]
    assert entry["version"] == 1 and entry["reason"] == "initial" and entry["promoted"]
    assert ModelStore(ws).current_version() == 1
    assert ws.db_path == ws.root / "state" / "mlupdated.db"
    assert ws.predictions_log == ws.root / "predictions.jsonl"
    assert ws.cache == ws.root / "state" / "cache"
    # Nothing world-writable.
    for path in ws.root.rglob("*"):
        assert not path.lstat().st_mode & 0o002, path


def test_labels_come_from_the_model(tmp_path: Path) -> None:
    model = _model(tmp_path, classes=("apple", "banana", "cherry"))
    ws = init_workspace(tmp_path / "ws", model_path=model)
    assert sorted(p.name for p in ws.corrections.iterdir()) == ["apple", "banana", "cherry"]


def test_int_labels_become_folder_names(tmp_path: Path) -> None:
    model = _model(tmp_path, classes=(3, 7))
    ws = init_workspace(tmp_path / "ws", model_path=model)
    assert sorted(p.name for p in ws.corrections.iterdir()) == ["3", "7"]


def test_second_init_changes_nothing(tmp_path: Path) -> None:
    model = _model(tmp_path)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    (ws.corrections / "Cat" / "a.jpg").write_bytes(b"user file")
    ws.config_path.write_text("[update]\nmin_batch = 3\n", encoding="utf-8")
    before = _tree(ws.root)
    again = init_workspace(tmp_path / "ws", model_path=model)
    assert again == ws
    assert _tree(ws.root) == before


def test_init_completes_a_half_made_workspace(tmp_path: Path) -> None:
    model = _model(tmp_path)
    ws = init_workspace(tmp_path / "ws", model_path=model)
    ws.current_model.unlink()
    ws.config_path.unlink()
    os.rmdir(ws.inbox)
    init_workspace(ws.root, model_path=model)
    assert ws.current_model.read_bytes() == model.read_bytes()
    assert ws.config_path.is_file() and ws.inbox.is_dir()


def test_refuses_a_different_workspace(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", model_path=_model(tmp_path))
    other = _model(tmp_path, "other.mlmodel", weight_seed=5)
    before = _tree(ws.root)
    with pytest.raises(WorkspaceError, match="different workspace"):
        init_workspace(ws.root, model_path=other)
    assert _tree(ws.root) == before


@pytest.mark.parametrize("name", ["config.toml", "models/current.mlmodel"])
def test_refuses_unrelated_files_it_would_overwrite(tmp_path: Path, name: str) -> None:
    root = tmp_path / "ws"
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("mine", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="unrelated"):
        init_workspace(root, model_path=_model(tmp_path))
    assert (root / name).read_text(encoding="utf-8") == "mine"


def test_unrelated_but_harmless_files_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("hello", encoding="utf-8")
    init_workspace(root, model_path=_model(tmp_path))
    assert (root / "notes.txt").read_text(encoding="utf-8") == "hello"


def test_refuses_a_file_where_a_folder_goes(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "inbox").write_text("x", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="not a directory"):
        init_workspace(root, model_path=_model(tmp_path))


def test_missing_and_broken_models(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        init_workspace(tmp_path / "ws", model_path=tmp_path / "nope.mlmodel")
    garbage = tmp_path / "garbage.mlmodel"
    garbage.write_bytes(b"\xff\x00 not a model")
    with pytest.raises(ModelParseError):
        init_workspace(tmp_path / "ws2", model_path=garbage)
    assert not (tmp_path / "ws2").exists()


def test_open_workspace(tmp_path: Path) -> None:
    model = _model(tmp_path)
    with pytest.raises(WorkspaceError, match="not a workspace"):
        open_workspace(tmp_path / "ws", create=False, model_path=None)
    ws = open_workspace(tmp_path / "ws", create=True, model_path=model)
    assert ws.is_workspace()
    shutil.rmtree(ws.state)
    again = open_workspace(tmp_path / "ws", create=False, model_path=None)
    assert again.state.is_dir()


def test_init_command_prints_what_it_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model(tmp_path)
    args = argparse.Namespace(dir=str(tmp_path / "ws"), model=str(model))
    assert run_init_command(args) == 0
    out = capsys.readouterr().out
    assert "created corrections/Cat/" in out and "created models/current.mlmodel" in out
    assert run_init_command(args) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_cli_init_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlupdated.cli import main

    model = _model(tmp_path)
    assert main(["init", str(tmp_path / "ws"), "--model", str(model)]) == 0
    other = _model(tmp_path, "other.mlmodel", weight_seed=9)
    capsys.readouterr()
    assert main(["init", str(tmp_path / "ws"), "--model", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different workspace" in err[0]


def test_workspace_from_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = init_workspace(tmp_path / "ws", model_path=_model(tmp_path))
    monkeypatch.setenv("MLUPDATED_WORKSPACE", str(tmp_path / "env"))
    explicit = argparse.Namespace(workspace=str(tmp_path / "x"))
    assert workspace_root_from_args(explicit) == tmp_path / "x"
    monkeypatch.chdir(ws.corrections / "Cat")
    assert workspace_root_from_args(argparse.Namespace(workspace=None)) == ws.root
    monkeypatch.chdir(tmp_path)
    assert workspace_root_from_args(argparse.Namespace(workspace=None)) == tmp_path / "env"


def test_relative_names() -> None:
    ws = Workspace(Path("/srv/ws"))
    assert ws.relative("/srv/ws/corrections/Cat/a b.jpg") == "corrections/Cat/a b.jpg"


HUGE_MODEL_BYTES = 3 * 1024**3
# The interpreter with the package imported is some tens of MB; reading the file
# would cost its whole size.
HUGE_MODEL_RSS_BOUND = 300 * 1024**2


def test_init_refuses_a_huge_model_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.mlmodel"
    with open(huge, "wb") as handle:  # sparse: no disk space, but a 3 GiB read
        handle.truncate(HUGE_MODEL_BYTES)
    # A wrapper process whose only child is the CLI, so RUSAGE_CHILDREN is that child's.
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(done.returncode, peak)\n"
        "sys.stderr.write(done.stderr)\n"
    )
    command = [sys.executable, "-m", "mlupdated.cli", "init", str(tmp_path / "ws")]
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command, "--model", str(huge)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, peak = (int(x) for x in done.stdout.split())
    assert code == 2
    assert f"file is {HUGE_MODEL_BYTES} bytes, larger than the 2 GiB" in done.stderr
    assert peak < HUGE_MODEL_RSS_BOUND, peak
    assert not (tmp_path / "ws").exists()


def test_init_on_an_empty_model_says_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlupdated.cli import main

    empty = tmp_path / "empty.mlmodel"
    empty.write_bytes(b"")
    assert main(["init", str(tmp_path / "ws"), "--model", str(empty)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "empty file" in line
    with pytest.raises(ModelParseError, match="empty file"):
        init_workspace(tmp_path / "ws", model_path=empty)


def test_folders_remade_on_open_are_not_world_writable_under_umask_0(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", model_path=_model(tmp_path))
    shutil.rmtree(ws.state)
    shutil.rmtree(ws.inbox)
    previous = os.umask(0)
    try:
        open_workspace(ws.root, create=False, model_path=None)
    finally:
        os.umask(previous)
    for directory in (ws.state, ws.inbox):
        assert directory.stat().st_mode & 0o777 == 0o755, directory
