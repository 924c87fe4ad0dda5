"""The feature cache's entry names."""

from __future__ import annotations

import os
import stat

import numpy as np
from mlupdated.engine import graph_cache
from mlupdated.train.cache import FeatureCache, entry_key


def test_entry_key_depends_on_each_part_and_on_the_engine(monkeypatch) -> None:
    base = entry_key("prefix", "content", "scaleFill")
    assert base == entry_key("prefix", "content", "scaleFill")
    assert base != entry_key("other", "content", "scaleFill")
    assert base != entry_key("prefix", "other", "scaleFill")
    assert base != entry_key("prefix", "content", "centerCrop")
    monkeypatch.setattr(graph_cache, "ENGINE_VERSION", graph_cache.ENGINE_VERSION + "-next")
    assert base != entry_key("prefix", "content", "scaleFill")


def test_cache_folders_are_not_world_writable_under_a_permissive_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        cache = FeatureCache(tmp_path / "features")
        cache.put("ab" * 32, {"blob": np.zeros(3, np.float32)})
    finally:
        os.umask(old)
    for folder in [cache.directory, *cache.directory.iterdir()]:
        assert not folder.stat().st_mode & stat.S_IWOTH, folder
