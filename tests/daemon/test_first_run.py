"""``mlupdated run`` on a folder that is no workspace yet makes the one ``init`` makes."""

from __future__ import annotations

import hashlib

from tests.daemon.conftest import Workspace, cli


def test_first_run_starts_from_the_same_bundled_model_as_init(daemons, tmp_path) -> None:
    made = tmp_path / "by-init"
    done = cli("init", str(made))
    assert done.returncode == 0, done.stderr
    fresh = Workspace(tmp_path / "by-run")
    daemon = daemons(fresh).start()
    assert daemon.stop() == 0

    def first_version(root) -> str:
        data = (root / "models" / "versions" / "0001.mlmodel").read_bytes()
        return hashlib.sha256(data).hexdigest()

    assert first_version(fresh.root) == first_version(made)
    assert (fresh.root / "models" / "current.mlmodel").read_bytes() == (
        made / "models" / "current.mlmodel"
    ).read_bytes()
    labels = sorted(p.name for p in (made / "corrections").iterdir())
    assert sorted(p.name for p in fresh.corrections.iterdir()) == labels
