"""Readers of ``current.mlmodel`` during swaps never see a partial model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from mlupdated.service.store import ModelStore
from mlupdated.service.workspace import Workspace as StoreWorkspace

from tests.daemon.conftest import make_photo, sha256_of, wrong_photos

SWAPS = 20
DAEMON_SWAPS = 2

# Loads the live model in a tight loop until told to stop; reports what it saw.
READER = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    from mlupdated.coreml.proto import Model_pb2

    path, stop = Path(sys.argv[1]), Path(sys.argv[2])
    held = open(path, "rb")  # an old handle, kept across every swap
    reads, failures, seen, errors = 0, 0, set(), []
    print("ready", flush=True)
    while not stop.exists():
        try:
            data = path.read_bytes()
            spec = Model_pb2.Model()
            spec.ParseFromString(data)
            if spec.WhichOneof("Type") is None:
                raise ValueError("parsed to an empty model")
            seen.add(hashlib.sha256(data).hexdigest())
        except Exception as exc:
            failures += 1
            errors.append(repr(exc))
        reads += 1
    old = held.read()
    print(json.dumps({"reads": reads, "failures": failures, "seen": sorted(seen),
                      "errors": errors[:5], "held": hashlib.sha256(old).hexdigest()}))
    """
)


def test_reader_never_sees_a_partial_model_during_20_swaps(workspace, daemons, tmp_path) -> None:
    workspace.write_config(update={"min_batch": 1, "quiet_seconds": 0.3})
    label, photos = wrong_photos(workspace, tmp_path / "camera", count=DAEMON_SWAPS)
    first = sha256_of(workspace.current_model)
    daemon = daemons(workspace).start()
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(workspace.current_model), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"

        # Swaps made by the daemon: one promoted update per dropped correction.
        for index, photo in enumerate(photos):
            mark = daemon.mark()
            shutil.copy2(photo, workspace.corrections / label / photo.name)
            done = daemon.wait_for(event="update finished", since=mark, timeout=90)
            assert done["outcome"] == "promoted", done.get("reason")
            assert done["version"] == index + 2
        # The rest: rollbacks between the versions, through the store the rollback
        # command uses (a CLI start per swap would cost seconds each).
        store = ModelStore(StoreWorkspace(workspace.root))
        versions = store.versions()
        for i in range(SWAPS - DAEMON_SWAPS):
            target = versions[i % len(versions)]
            if target == store.current_version():
                target = versions[(i + 1) % len(versions)]
            store.rollback(target)
        # The daemon keeps working on top of rollbacks.
        mark = daemon.mark()
        make_photo(workspace.corrections / label / "last.png", "red", 4242)
        done = daemon.wait_for(event="update finished", since=mark, timeout=90)
        assert done["outcome"] == "promoted", done.get("reason")
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    known = {e["sha256"] for e in workspace.manifest()["versions"]}
    assert report["failures"] == 0, report["errors"]
    assert report["reads"] > SWAPS
    assert set(report["seen"]) <= known  # every read was a whole, known version
    assert len(report["seen"]) >= 2
    assert report["held"] == first  # the old handle still reads the old model
    swaps = daemon.find(event="model promoted")
    assert len(swaps) == DAEMON_SWAPS + 1
    assert daemon.stop() == 0
