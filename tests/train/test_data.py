"""Label folders → examples: order, hidden files, unknown folders, int labels."""

from __future__ import annotations

import os

import pytest
from mlupdated.errors import TrainingDataError
from mlupdated.train.data import examples_from_folder


def touch(root, *relative):
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_examples_in_relative_path_byte_order(tmp_path):
    touch(
        tmp_path, "Dog/b.png", "Dog/B.png", "Cat/z.png", "Cat/sub/a.png", "Cat/_x.png", "Dog/a.png"
    )
    examples = examples_from_folder(tmp_path, ["Cat", "Dog"])
    relative = [e.source.relative_to(tmp_path).as_posix() for e in examples]
    assert relative == sorted(relative, key=os.fsencode)
    assert relative == [
        "Cat/_x.png",
        "Cat/sub/a.png",
        "Cat/z.png",
        "Dog/B.png",
        "Dog/a.png",
        "Dog/b.png",
    ]
    assert [e.label for e in examples] == ["Cat"] * 3 + ["Dog"] * 3


def test_hidden_files_and_folders_are_skipped(tmp_path):
    touch(
        tmp_path,
        "Cat/.DS_Store",
        "Cat/.hidden/a.png",
        "Cat/ok.png",
        ".trash/Cat/x.png",
        "notes.txt",
    )
    examples = examples_from_folder(tmp_path, ["Cat", "Dog"])
    assert [e.source.name for e in examples] == ["ok.png"]


def test_unknown_label_folder_is_named_with_the_labels(tmp_path):
    touch(tmp_path, "Cat/a.png", "Horse/b.png")
    with pytest.raises(TrainingDataError) as info:
        examples_from_folder(tmp_path, ["Cat", "Dog"])
    message = str(info.value)
    assert "'Horse'" in message and "(Cat, Dog)" in message
    assert info.value.path == str(tmp_path / "Horse")


def test_int_labels_match_their_decimal_name(tmp_path):
    touch(tmp_path, "7/a.png", "12/b.png")
    examples = examples_from_folder(tmp_path, [7, 12, 40])
    assert [e.label for e in examples] == [12, 7]
    assert all(isinstance(e.label, int) for e in examples)


def test_new_labels_when_allowed(tmp_path):
    touch(tmp_path, "Cat/a.png", "Bird/b.png")
    examples = examples_from_folder(tmp_path, ["Cat"], allow_new_labels=True)
    assert [e.label for e in examples] == ["Bird", "Cat"]


def test_empty_or_missing_data_is_an_error(tmp_path):
    (tmp_path / "Cat").mkdir()
    with pytest.raises(TrainingDataError, match="no example"):
        examples_from_folder(tmp_path, ["Cat"])
    with pytest.raises(TrainingDataError, match="not a folder"):
        examples_from_folder(tmp_path / "missing", ["Cat"])


def test_an_unlistable_data_folder_is_a_training_data_error(tmp_path, monkeypatch):
    (tmp_path / "Cat").mkdir()
    (tmp_path / "Cat" / "a.jpg").write_bytes(b"x")
    real = os.scandir

    def denied(path=".", *args, **kwargs):
        if os.fspath(path) == os.fspath(tmp_path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(TrainingDataError, match="Permission denied") as info:
        examples_from_folder(tmp_path, ["Cat"])
    assert info.value.path == str(tmp_path)


def test_an_unreadable_label_subfolder_is_an_error_not_silently_empty(tmp_path, monkeypatch):
    (tmp_path / "Cat" / "inner").mkdir(parents=True)
    (tmp_path / "Cat" / "a.jpg").write_bytes(b"x")
    inner = tmp_path / "Cat" / "inner"
    real = os.scandir

    def denied(path=".", *args, **kwargs):
        if os.fspath(path) == os.fspath(inner):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(TrainingDataError, match="Permission denied") as info:
        examples_from_folder(tmp_path, ["Cat"])
    assert info.value.path == str(inner)
