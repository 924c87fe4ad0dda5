"""People and programs in the workspace while the daemon runs: a file made readable
after it was refused, an inbox that is a symbolic link, ``state/`` deleted under a
running daemon (and a second daemon started then)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.daemon.conftest import make_photo

# Under root, chmod 000 denies nothing: drop the capabilities that bypass file modes.
_NO_DAC = ("--inh-caps", "-dac_override,-dac_read_search")
_NO_DAC_BOUND = ("--bounding-set", "-dac_override,-dac_read_search")


def _deniable_prefix() -> tuple[str, ...]:
    """A command prefix under which the daemon cannot read a mode-000 file."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: root reads any file, whatever its mode")
    return (setpriv, *_NO_DAC, *_NO_DAC_BOUND, "--")


@pytest.mark.parametrize(
    ("observer", "rescan"),
    [("native", 300), ("polling", 2)],
    ids=["native-event", "polling-rescan"],
)
def test_refused_file_is_queued_once_readable(workspace, daemons, observer, rescan) -> None:
    # The chmod itself is the hint (an attribute event) with native events; a polling
    # observer misses a mode change, so there the rescan must notice it.
    workspace.write_config(intake={"observer": observer, "rescan_seconds": rescan})
    daemon = daemons(workspace).start(prefix=_deniable_prefix())
    outside = make_photo(workspace.root.parent / "locked.png", "red", 1)
    outside.chmod(0o000)
    target = workspace.corrections / "Cat" / "locked.png"
    os.replace(outside, target)
    refused = daemon.wait_for(event="not queued: corrections/Cat/locked.png")
    assert "permission denied" in refused["reason"].lower()

    mark = daemon.mark()
    target.chmod(0o644)
    queued = daemon.wait_for(since=mark, event="correction queued: corrections/Cat/locked.png")
    assert queued["label"] == "Cat"
    assert daemon.stop() == 0
