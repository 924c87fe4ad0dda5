"""Intake with real observers (native and polling), real files and a real queue."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlupdated.service.config import Config, with_overrides
from mlupdated.service.intake import Intake
from mlupdated.service.queue import CorrectionChange, Queue
from mlupdated.service.workspace import Workspace, init_workspace
from PIL import Image
from watchdog.observers import Observer

from tests.helpers.updatable_specs import build_updatable_spec

STABILITY = 0.3
TIMEOUT = 30.0


def image_bytes(seed: int, *, size: int = 16, fmt: str = "PNG") -> bytes:
    """A small image whose bytes differ for every seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class RecordingLog:
    """A structlog-like logger that keeps every line (the daemon passes structlog's)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, level: str, event: str, **kw: Any) -> None:
        with self._lock:
            self.lines.append((level, event, kw))

    def debug(self, event: str, **kw: Any) -> None:
        self._record("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._record("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._record("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._record("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._record("exception", event, **kw)

    def matching(self, text: str) -> list[str]:
        with self._lock:
            return [event for _level, event, _kw in self.lines if text in event]


class Harness:
    def __init__(self, root: Path, model: Path, config: Config, *, busy_timeout: float) -> None:
        self.ws: Workspace = init_workspace(root, model_path=model)
        self.queue = Queue(self.ws.db_path, busy_timeout=busy_timeout)
        self.changes: list[CorrectionChange] = []
        self.inbox: list[tuple[Path, str]] = []
        self.log = RecordingLog()
        self.intake = Intake(
            self.ws,
            config,
            self.queue,
            on_correction=self.changes.append,
            on_inbox=lambda path, digest: self.inbox.append((path, digest)),
            log=self.log,
        )

    @property
    def cat(self) -> Path:
        return self.ws.corrections / "Cat"

    @property
    def dog(self) -> Path:
        return self.ws.corrections / "Dog"

    def settle(self) -> None:
        """Let events arrive, then wait until intake has nothing left to do."""
        time.sleep(max(self.intake.config.intake.stability_seconds, 0.3))
        assert self.intake.wait_idle(TIMEOUT)
        assert self.intake.rescan(wait=True, timeout=TIMEOUT)
        assert self.intake.wait_idle(TIMEOUT)

    def paths(self) -> dict[str, str]:
        return self.queue.correction_paths()

    def kinds(self) -> list[str]:
        return [c.kind for c in self.changes]

    def not_queued(self) -> list[str]:
        return self.log.matching("not queued: ")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.mlmodel"
    path.write_bytes(build_updatable_spec().SerializeToString())
    return path


def make_config(observer: str, **intake: Any) -> Config:
    values = {
        "observer": observer,
        "stability_seconds": STABILITY,
        "polling_interval": 0.2,
        "rescan_seconds": 300.0,
    }
    values.update(intake)
    return with_overrides(Config(), "intake", **values)


@pytest.fixture(params=["native", "polling"])
def observer(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(tmp_path: Path, model_file: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(
        observer: str = "native", *, start: bool = True, busy_timeout: float = 10.0, **intake: Any
    ) -> Harness:
        h = Harness(
            tmp_path / f"ws{len(made)}",
            model_file,
            make_config(observer, **intake),
            busy_timeout=busy_timeout,
        )
        made.append(h)
        if start:
            h.intake.start()
        return h

    yield factory
    for h in made:
        h.intake.stop()
        h.queue.close()


# --- the basics -----------------------------------------------------------------------


def test_start_up_sweep_takes_what_arrived_while_down(
    make: Callable[..., Harness], observer: str
) -> None:
    h = make(observer, start=False)
    (h.cat / "a.png").write_bytes(image_bytes(1))
    (h.dog / "sub" / "deeper").mkdir(parents=True)
    (h.dog / "sub" / "deeper" / "b.png").write_bytes(image_bytes(2))
    (h.ws.inbox / "c.png").write_bytes(image_bytes(3))
    h.intake.start()
    h.settle()
    assert h.paths() == {
        "corrections/Cat/a.png": "Cat",
        "corrections/Dog/sub/deeper/b.png": "Dog",
    }
    assert [(p.name, d) for p, d in h.inbox] == [("c.png", sha(image_bytes(3)))]
    assert h.kinds() == ["new", "new"]


def test_drop_queues_once(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    data = image_bytes(1, fmt="JPEG")
    (h.cat / "a.jpg").write_bytes(data)
    h.settle()
    (pending,) = h.queue.pending()
    assert pending.sha256 == sha(data) and pending.label == "Cat"
    assert pending.path == "corrections/Cat/a.jpg"
    # A second rescan and an mtime-preserving no-op change nothing.
    h.settle()
    assert h.kinds() == ["new"]
    assert h.not_queued() == []
    status = h.intake.status()
    assert status["observer"] == observer and status["alive"] and status["source_available"]
    assert status["last_rescan"] is not None


def test_slow_writer_is_queued_once_when_complete(
    make: Callable[..., Harness], observer: str
) -> None:
    # A generous stability time: the writer's pauses must stay well below it even on a
    # loaded CI machine, or the half-written file would (rightly) be reported bad.
    h = make(observer, stability_seconds=1.0)
    data = image_bytes(7, size=64, fmt="JPEG")
    chunks = [data[i : i + len(data) // 12 + 1] for i in range(0, len(data), len(data) // 12 + 1)]
    with open(h.dog / "slow.jpg", "wb") as handle:
        for chunk in chunks:  # about three seconds, well past the stability time each step
            handle.write(chunk)
            handle.flush()
            time.sleep(0.25)
    h.settle()
    (pending,) = h.queue.pending()
    assert pending.sha256 == sha(data)
    assert h.kinds() == ["new"]
    assert h.not_queued() == []


def test_preallocated_zero_file_then_filled(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer, stability_seconds=1.0)
    data = image_bytes(8, size=48, fmt="PNG")
    path = h.cat / "prealloc.png"
    path.write_bytes(b"\0" * len(data))
    time.sleep(0.1)
    with open(path, "r+b") as handle:
        for i in range(0, len(data), 200):
            handle.write(data[i : i + 200])
            handle.flush()
            time.sleep(0.02)
    h.settle()
    (pending,) = h.queue.pending()
    assert pending.sha256 == sha(data)
    assert h.kinds() == ["new"]


SYNC_TEMPORARIES = [
    ".syncthing.a.jpg.tmp",
    "~syncthing~a.jpg.tmp",
    "a.jpg.part",
    "a.jpg.ocTransferId123.part",
    ".a.jpg.Xy12Ab",
    "a.jpg.filepart",
    "a.jpg.crdownload",
    "a.jpg.partial",
    "._a.jpg",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    ".a.jpg.icloud",
    "a.jpg.nextcloud",
    "b.JPG.ownCloud",
    ".~lock.a.jpg#",
    ".stversions/a~20250101-120000.jpg",
    ".stfolder/x.jpg",
    "@eaDir/a.jpg/SYNOFILE_THUMB_M.jpg",
    "#recycle/old.jpg",
]


def test_sync_temporaries_are_ignored_and_the_rename_counts(
    make: Callable[..., Harness], observer: str
) -> None:
    h = make(observer)
    for i, name in enumerate(SYNC_TEMPORARIES):
        path = h.dog / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(100 + i, fmt="JPEG"))
    h.settle()
    assert h.paths() == {}
    assert h.not_queued() == []
    final = image_bytes(99, fmt="JPEG")
    (h.dog / ".syncthing.a.jpg.tmp").write_bytes(final)
    os.rename(h.dog / ".syncthing.a.jpg.tmp", h.dog / "a.jpg")
    h.settle()
    assert h.paths() == {"corrections/Dog/a.jpg": "Dog"}
    (pending,) = h.queue.pending()
    assert pending.sha256 == sha(final)
    assert h.kinds() == ["new"]


def test_extra_ignore_globs(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer, ignore=["*.raw.png", "drafts"])
    (h.cat / "x.raw.png").write_bytes(image_bytes(1))
    (h.cat / "drafts").mkdir()
    (h.cat / "drafts" / "y.png").write_bytes(image_bytes(2))
    (h.cat / "ok.png").write_bytes(image_bytes(3))
    h.settle()
    assert h.paths() == {"corrections/Cat/ok.png": "Cat"}


def test_conflict_copies(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    data = image_bytes(1)
    (h.cat / "a.png").write_bytes(data)
    h.settle()
    (h.cat / "a.sync-conflict-20250101-120000-ABCDEFG.png").write_bytes(data)
    (h.cat / "a.sync-conflict-20250102-120000-ABCDEFG.png").write_bytes(image_bytes(2))
    h.settle()
    assert sorted(h.kinds()) == ["duplicate", "new", "new"]
    assert h.queue.counts()["pending"] == 2


def test_same_bytes_across_labels_latest_wins(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    data = image_bytes(5)
    (h.cat / "a.png").write_bytes(data)
    h.settle()
    (h.dog / "a-again.png").write_bytes(data)
    h.settle()
    assert h.kinds() == ["new", "relabelled"]
    assert h.queue.pending_counts() == {"Dog": 1}
    # Both copies are still there: a conflict, said as one (the latest label is used).
    assert h.log.matching("conflict: corrections/Dog/a-again.png (Dog) is the same image as")


# --- moves and removals -----------------------------------------------------------------


def test_folder_moved_in(make: Callable[..., Harness], observer: str, tmp_path: Path) -> None:
    h = make(observer)
    batch = tmp_path / "batch"
    (batch / "inner").mkdir(parents=True)
    for i in range(5):
        (batch / f"{i}.png").write_bytes(image_bytes(10 + i))
    (batch / "inner" / "x.png").write_bytes(image_bytes(20))
    os.rename(batch, h.dog / "batch")
    h.settle()
    assert h.queue.pending_counts() == {"Dog": 6}
    assert h.kinds() == ["new"] * 6


def test_file_moved_between_labels_is_relabelled(
    make: Callable[..., Harness], observer: str
) -> None:
    h = make(observer)
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    os.rename(h.cat / "a.png", h.dog / "a.png")
    h.settle()
    assert h.queue.pending_counts() == {"Dog": 1}
    assert h.paths() == {"corrections/Dog/a.png": "Dog"}
    assert h.kinds() == ["new", "relabelled"]
    assert h.queue.counts()["retracted"] == 0


def test_folder_moved_between_labels(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    (h.cat / "set").mkdir()
    for i in range(3):
        (h.cat / "set" / f"{i}.png").write_bytes(image_bytes(i))
    h.settle()
    os.rename(h.cat / "set", h.dog / "set")
    h.settle()
    assert h.queue.pending_counts() == {"Dog": 3}
    assert h.queue.counts()["retracted"] == 0


def test_deleted_before_training_is_retracted(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    (h.cat / "a.png").write_bytes(image_bytes(1))
    (h.cat / "b.png").write_bytes(image_bytes(2))
    h.settle()
    (h.cat / "a.png").unlink()
    h.settle()
    assert h.queue.counts() == {"pending": 1, "trained": 0, "rejected": 0, "retracted": 1}
    assert h.log.matching("correction retracted: corrections/Cat/a.png")


def test_rename_within_a_label_is_not_a_new_drop(
    make: Callable[..., Harness], observer: str
) -> None:
    h = make(observer)
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    os.rename(h.cat / "a.png", h.cat / "renamed.png")
    h.settle()
    assert h.paths() == {"corrections/Cat/renamed.png": "Cat"}
    assert h.queue.counts()["pending"] == 1


# --- bad input --------------------------------------------------------------------------


def test_unknown_label_folder(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    (h.ws.corrections / "Hamster").mkdir()
    (h.ws.corrections / "Hamster" / "h.png").write_bytes(image_bytes(1))
    (h.ws.corrections / "loose.png").write_bytes(image_bytes(2))
    h.settle()
    h.settle()
    assert h.paths() == {}
    assert sorted(h.not_queued()) == [
        "not queued: corrections/Hamster/h.png: unknown label 'Hamster' (model labels: Cat, Dog)",
        "not queued: corrections/loose.png: not inside a label folder (model labels: Cat, Dog)",
    ]
    assert {e["path"] for e in h.queue.recent_errors(10)} == {
        "corrections/Hamster/h.png",
        "corrections/loose.png",
    }


def test_corrupt_and_fake_images_one_line_each(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    good = image_bytes(3, size=32, fmt="JPEG")
    (h.cat / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (h.cat / "text.jpg").write_text("this is not a photo\n", encoding="utf-8")
    (h.cat / "empty.png").write_bytes(b"")
    h.settle()
    h.settle()  # a later rescan must not repeat the lines
    lines = sorted(h.not_queued())
    assert len(lines) == 3
    assert [line.split(":")[1].strip() for line in lines] == [
        "corrections/Cat/empty.png",
        "corrections/Cat/text.jpg",
        "corrections/Cat/truncated.jpg",
    ]
    assert h.paths() == {}
    # The watcher lives on: the next good file is taken.
    (h.cat / "good.jpg").write_bytes(good)
    h.settle()
    assert h.paths() == {"corrections/Cat/good.jpg": "Cat"}


def test_fixed_bad_file_is_taken(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    (h.cat / "a.png").write_text("not yet", encoding="utf-8")
    h.settle()
    assert len(h.not_queued()) == 1
    (h.cat / "a.png").write_bytes(image_bytes(4))
    h.settle()
    assert h.paths() == {"corrections/Cat/a.png": "Cat"}


def test_symlink_out_of_the_workspace_is_not_followed(
    make: Callable[..., Harness], tmp_path: Path, observer: str
) -> None:
    h = make(observer, follow_symlinks=True)
    outside = tmp_path / "secret.png"
    outside.write_bytes(image_bytes(1))
    (h.cat / "link.png").symlink_to(outside)
    os.symlink(tmp_path, h.cat / "linkdir")
    h.settle()
    assert h.paths() == {}
    lines = h.not_queued()
    assert any("corrections/Cat/link.png: symbolic link pointing outside" in x for x in lines)
    assert any("corrections/Cat/linkdir" in x for x in lines)


def test_symlinks_not_followed_by_default(make: Callable[..., Harness]) -> None:
    h = make()
    (h.ws.inbox / "real.png").write_bytes(image_bytes(1))
    (h.cat / "link.png").symlink_to(h.ws.inbox / "real.png")
    h.settle()
    assert h.paths() == {}
    assert any("symbolic link (not followed)" in x for x in h.not_queued())


def test_symlink_inside_the_workspace_followed_when_allowed(make: Callable[..., Harness]) -> None:
    h = make(follow_symlinks=True)
    data = image_bytes(1)
    (h.ws.root / "library").mkdir()
    (h.ws.root / "library" / "real.png").write_bytes(data)
    (h.cat / "link.png").symlink_to(h.ws.root / "library" / "real.png")
    h.settle()
    (pending,) = h.queue.pending()
    assert pending.path == "corrections/Cat/link.png" and pending.sha256 == sha(data)


def test_fifo_is_never_opened(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    os.mkfifo(h.cat / "pipe.jpg")
    (h.cat / "after.png").write_bytes(image_bytes(2))
    h.settle()  # would hang (and time out) if anything opened the FIFO for reading
    assert h.paths() == {"corrections/Cat/after.png": "Cat"}
    assert any("corrections/Cat/pipe.jpg: not a regular file (fifo)" in x for x in h.not_queued())


# --- load, lost events, dead observers, flapping mounts ------------------------------------


def test_burst_of_a_thousand_files(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    count = 1000
    blobs = [image_bytes(1000 + i, size=8) for i in range(count)]
    for i, blob in enumerate(blobs):
        (h.dog if i % 2 else h.cat / f"{i % 7}").mkdir(parents=True, exist_ok=True)
        folder = h.dog if i % 2 else h.cat / f"{i % 7}"
        (folder / f"{i:04d}.png").write_bytes(blob)
    wait_for(lambda: h.queue.counts()["pending"] >= count, timeout=120)
    h.settle()
    assert h.queue.counts()["pending"] == count
    assert h.kinds() == ["new"] * count
    assert {c.sha256 for c in h.queue.pending()} == {sha(b) for b in blobs}
    assert h.not_queued() == []


def test_lost_event_is_caught_by_the_periodic_rescan(
    make: Callable[..., Harness], observer: str
) -> None:
    h = make(observer, rescan_seconds=1.0)
    h.settle()
    h.intake._observer.unschedule_all()  # from now on every event is lost
    before = h.intake.status()["rescans"]
    (h.cat / "missed.png").write_bytes(image_bytes(1))
    wait_for(lambda: h.paths() == {"corrections/Cat/missed.png": "Cat"})
    assert h.intake.status()["rescans"] > before
    assert h.intake.status()["restarts"] == 0  # found by the rescan, not by a restart


def test_dead_observer_is_restarted(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    h.intake._observer.stop()  # the observer thread dies under intake's feet
    wait_for(lambda: h.intake.status()["restarts"] >= 1 and h.intake.is_alive())
    (h.cat / "after.png").write_bytes(image_bytes(1))
    time.sleep(0.3)
    wait_for(lambda: h.paths() == {"corrections/Cat/after.png": "Cat"})
    assert h.log.matching("file observer stopped; restarting it")


def test_watch_limit_falls_back_to_polling(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    class ExhaustedObserver(Observer):  # type: ignore[misc,valid-type]
        """The real inotify observer, started when the kernel's watch limit is used up."""

        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr("watchdog.observers.Observer", ExhaustedObserver)
    h = make("native")
    assert h.intake.status()["observer"] == "polling"
    assert "inotify watch limit reached" in h.intake.status()["fallback_reason"]
    assert h.log.matching("falling back to polling")
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    assert h.paths() == {"corrections/Cat/a.png": "Cat"}


def test_mount_flap_retracts_nothing(
    make: Callable[..., Harness], tmp_path: Path, observer: str
) -> None:
    h = make(observer)
    for i in range(3):
        (h.cat / f"{i}.png").write_bytes(image_bytes(i))
    (h.dog / "d.png").write_bytes(image_bytes(9))
    h.settle()
    assert h.queue.counts()["pending"] == 4
    # The share under corrections/ goes away (looks like the folders vanished) …
    away = tmp_path / "away"
    os.rename(h.ws.corrections, away)
    os.mkdir(h.ws.corrections)
    h.settle()
    assert h.queue.counts() == {"pending": 4, "trained": 0, "rejected": 0, "retracted": 0}
    status = h.intake.status()
    assert not status["source_available"]
    assert "corrections/Cat" in status["unavailable"]
    # … and comes back: nothing re-queued, nothing lost.
    os.rmdir(h.ws.corrections)
    os.rename(away, h.ws.corrections)
    h.settle()
    assert h.intake.status()["source_available"]
    assert h.queue.counts()["pending"] == 4
    assert h.kinds() == ["new"] * 4
    # And the watch works again after the flap.
    (h.dog / "later.png").write_bytes(image_bytes(10))
    h.settle()
    assert h.queue.counts()["pending"] == 5


def test_whole_corrections_folder_missing(
    make: Callable[..., Harness], tmp_path: Path, observer: str
) -> None:
    h = make(observer)
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    shutil.move(str(h.ws.corrections), str(tmp_path / "gone"))
    h.settle()
    assert h.queue.counts()["pending"] == 1
    assert "corrections" in h.intake.status()["unavailable"]


def test_handler_exception_does_not_kill_intake(make: Callable[..., Harness]) -> None:
    h = make()
    h.intake._events.put(("path", None))  # garbage in the event queue
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    assert h.paths() == {"corrections/Cat/a.png": "Cat"}
    assert h.intake.is_alive()


def test_stop_is_clean(make: Callable[..., Harness]) -> None:
    h = make()
    h.intake.stop()
    assert not h.intake.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("mlupdated-intake")]


def test_unusual_names(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    (h.cat / "chat noir – été 🐈.png").write_bytes(image_bytes(1))
    (h.cat / ("x" * 200 + ".png")).write_bytes(image_bytes(2))
    (h.cat / "two\nlines.jpg").write_text("not an image", encoding="utf-8")
    h.settle()
    assert set(h.paths()) == {
        "corrections/Cat/chat noir – été 🐈.png",
        "corrections/Cat/" + "x" * 200 + ".png",
    }
    (line,) = h.not_queued()
    assert "\n" not in line and "two\\nlines.jpg" in line


_LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_locked_database_delays_but_loses_nothing(make: Callable[..., Harness]) -> None:
    import subprocess
    import sys

    h = make(busy_timeout=0.1)
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(h.ws.db_path), "2.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (h.cat / "a.png").write_bytes(image_bytes(1))
        wait_for(lambda: h.log.matching("cannot queue corrections/Cat/a.png yet"))
    finally:
        holder.wait()
    wait_for(lambda: h.paths() == {"corrections/Cat/a.png": "Cat"})
    assert h.kinds() == ["new"]


def test_pixel_limit_refuses_big_images(make: Callable[..., Harness]) -> None:
    h = make(max_pixels=100)
    (h.cat / "big.png").write_bytes(image_bytes(1, size=16))  # 256 pixels > 100
    h.settle()
    assert h.paths() == {}
    (line,) = h.not_queued()
    assert line.startswith("not queued: corrections/Cat/big.png: ")
    assert "pixel" in line.lower()


def test_inbox_photos_are_handed_over_once(make: Callable[..., Harness], observer: str) -> None:
    h = make(observer)
    data = image_bytes(1, fmt="JPEG")
    (h.ws.inbox / "phone").mkdir()
    (h.ws.inbox / "phone" / "IMG_0001.jpg").write_bytes(data)
    (h.ws.inbox / "broken.jpg").write_bytes(data[:40])
    h.settle()
    h.settle()
    assert [(p.relative_to(h.ws.root).as_posix(), d) for p, d in h.inbox] == [
        ("inbox/phone/IMG_0001.jpg", sha(data))
    ]
    (line,) = h.not_queued()
    assert line.startswith("not queued: inbox/broken.jpg: ")
    assert h.paths() == {}


def test_inotify_overflow_triggers_a_rescan(make: Callable[..., Harness]) -> None:
    import logging

    h = make()
    h.settle()
    before = h.intake.status()["rescans"]
    # watchdog reports a kernel queue overflow only through its logger.
    logging.getLogger("watchdog.observers.inotify").warning(
        "Inotify queue overflowed; reconciling recursive watches below %r", str(h.ws.corrections)
    )
    wait_for(lambda: h.intake.status()["rescans"] > before)
    assert h.log.matching("file event queue overflowed; rescanning")


def test_reloaded_ignore_rules_apply(make: Callable[..., Harness]) -> None:
    h = make()
    h.intake.update_config(make_config("native", ignore=["*.skip.png"]))
    (h.cat / "a.skip.png").write_bytes(image_bytes(1))
    (h.cat / "b.png").write_bytes(image_bytes(2))
    h.settle()
    assert h.paths() == {"corrections/Cat/b.png": "Cat"}


def test_label_folder_vanishing_with_polling(make: Callable[..., Harness], tmp_path: Path) -> None:
    h = make("polling")
    (h.cat / "a.png").write_bytes(image_bytes(1))
    h.settle()
    os.rename(h.cat, tmp_path / "cat-away")
    h.settle()
    assert h.queue.counts()["pending"] == 1
    assert h.intake.status()["unavailable"] == ["corrections/Cat"]
    os.rename(tmp_path / "cat-away", h.cat)
    h.settle()
    assert h.intake.status()["source_available"]
    assert h.queue.counts() == {"pending": 1, "trained": 0, "rejected": 0, "retracted": 0}
    assert h.kinds() == ["new"]


_MOUNT_FLAP = """
import json, subprocess, sys, time
from pathlib import Path
from mlupdated.service.config import Config, with_overrides
from mlupdated.service.intake import Intake
from mlupdated.service.queue import Queue
from mlupdated.service.workspace import init_workspace

root, model, share = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])


class Log:
    def __getattr__(self, level):
        return lambda event, **kw: None


ws = init_workspace(root, model_path=model)
cat = ws.corrections / "Cat"
subprocess.run(["mount", "--bind", str(share), str(cat)], check=True)
config = with_overrides(Config(), "intake", stability_seconds=0.2, rescan_seconds=300.0)
queue = Queue(ws.db_path)
changes = []
intake = Intake(ws, config, queue, on_correction=changes.append, on_inbox=lambda p, d: None,
                log=Log())


def settle():
    time.sleep(0.4)
    intake.wait_idle(30)
    intake.rescan(wait=True, timeout=30)
    intake.wait_idle(30)


intake.start()
settle()
result = {"before": queue.counts()}
subprocess.run(["umount", str(cat)], check=True)  # the share drops: Cat looks empty
settle()
result["during"] = queue.counts()
result["status_during"] = intake.status()
subprocess.run(["mount", "--bind", str(share), str(cat)], check=True)
settle()
result["after"] = queue.counts()
result["status_after"] = intake.status()
result["kinds"] = [c.kind for c in changes]
intake.stop()
queue.close()
print(json.dumps(result))
"""


def test_unmounted_label_share_is_unavailable_not_deleted(tmp_path: Path, model_file: Path) -> None:
    import json
    import subprocess
    import sys

    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("needs unshare -rm (a private mount namespace) to mount a share")
    share = tmp_path / "share"
    share.mkdir()
    for i in range(2):
        (share / f"{i}.png").write_bytes(image_bytes(i))
    proc = subprocess.run(
        [
            "unshare",
            "-rm",
            sys.executable,
            "-c",
            _MOUNT_FLAP,
            str(tmp_path / "ws"),
            str(model_file),
            str(share),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"]["pending"] == 2
    assert result["during"] == result["before"]
    assert result["status_during"]["unavailable"] == ["corrections/Cat"]
    assert result["after"] == result["before"]
    assert result["status_after"]["source_available"]
    assert result["kinds"] == ["new", "new"]


def test_a_read_that_blocks_never_stalls_intake(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlupdated.service.intake.reading as waiting

    # A cloud placeholder: reading it blocks until the sync client has downloaded it.
    # (Linux has no dataless files without FUSE; the decoder is made to block instead.)
    downloaded = threading.Event()
    real_check = waiting.check_image

    def blocking_check(path: Any, **options: Any) -> None:
        if "placeholder" in str(path):
            downloaded.wait(60)
        real_check(path, **options)

    monkeypatch.setattr(waiting, "check_image", blocking_check)
    monkeypatch.setattr(waiting, "SLOW_READ_SECONDS", 0.5)
    h = make()
    (h.cat / "placeholder.png").write_bytes(image_bytes(1))
    time.sleep(0.5)
    for i in range(5):
        (h.dog / f"{i}.png").write_bytes(image_bytes(10 + i))
    wait_for(lambda: h.queue.pending_counts() == {"Dog": 5})
    wait_for(lambda: h.log.matching("waiting for corrections/Cat/placeholder.png: reading it"))
    assert h.intake.status()["waiting"] == 1
    downloaded.set()
    h.settle()
    assert h.queue.pending_counts() == {"Cat": 1, "Dog": 5}
    assert h.not_queued() == []


def test_label_folder_with_the_wrong_case_gets_a_hint(make: Callable[..., Harness]) -> None:
    h = make()
    (h.ws.corrections / "dog").mkdir()
    (h.ws.corrections / "dog" / "a.png").write_bytes(image_bytes(1))
    h.settle()
    assert h.not_queued() == [
        "not queued: corrections/dog/a.png: unknown label 'dog' (model labels: Cat, Dog); "
        "did you mean 'Dog'?"
    ]
    assert h.paths() == {}
