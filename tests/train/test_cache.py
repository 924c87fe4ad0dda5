"""The feature cache's entry names."""

from __future__ import annotations

from mlupdated.engine import runtime
from mlupdated.train.cache import entry_key


def test_entry_key_depends_on_each_part_and_on_the_engine(monkeypatch) -> None:
    base = entry_key("prefix", "content", "scaleFill")
    assert base == entry_key("prefix", "content", "scaleFill")
    assert base != entry_key("other", "content", "scaleFill")
    assert base != entry_key("prefix", "other", "scaleFill")
    assert base != entry_key("prefix", "content", "centerCrop")
    monkeypatch.setattr(runtime, "ENGINE_VERSION", runtime.ENGINE_VERSION + "-next")
    assert base != entry_key("prefix", "content", "scaleFill")
