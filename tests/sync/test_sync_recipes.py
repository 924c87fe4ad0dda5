"""One test per recipe of docs/sync-recipes.md: the tool's write pattern, replayed.

Every finished file must give exactly one queued correction (or, in ``inbox/``, one
prediction) and no temporary may give any. Temporaries left behind hold complete,
valid and distinct images, so a missing ignore rule shows up as an extra correction
rather than hiding behind a decode error or the content de-duplication.

What was taken is read from the daemon's log ("correction queued: PATH as LABEL"), so
the check is on paths, not just counts, and then from ``mlupdated status --json``.
"Nothing more was taken" is made observable without sleeping: after the expected
files are queued, one last real file (the sentinel) is dropped. The daemon takes
files once they have been stable for a while, so by the time the sentinel is queued,
every older leftover has been looked at and refused.
"""

from __future__ import annotations

import json
import os
import plistlib
import zlib
from pathlib import Path

from syncdaemon import Daemon, make_jpeg, write_in_chunks

CAT_FILES = ("IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg")
DOG_FILES = ("IMG_0101.jpg", "IMG_0102.jpg")


def _seed(name: str) -> int:
    # Distinct names must give distinct images: the queue de-duplicates by content.
    return 1000 + zlib.crc32(name.encode())


def _wait_queued(daemon: Daemon, expected: set[str]) -> None:
    """Wait until exactly the ``expected`` paths are queued; fail at once on any other."""

    def reached() -> bool:
        queued = daemon.queued_paths()
        assert set(queued) <= expected, f"queued beyond the finished files: {sorted(queued)}"
        assert len(queued) == len(set(queued)), f"a file was queued twice: {sorted(queued)}"
        return set(queued) == expected

    daemon.wait_until(f"queued == {sorted(expected)}", reached)


def _finish_with_sentinel(daemon: Daemon, finished: dict[str, tuple[str, ...]]) -> None:
    """Check the finished files were queued, then nothing else even after a sentinel."""
    expected = {
        f"corrections/{label}/{name}" for label, names in finished.items() for name in names
    }
    _wait_queued(daemon, expected)
    label = next(iter(finished))
    sentinel = daemon.workspace / "corrections" / label / "sentinel.jpg"
    sentinel.write_bytes(make_jpeg(_seed("sentinel")))
    _wait_queued(daemon, expected | {f"corrections/{label}/sentinel.jpg"})
    counts = {lbl: len(names) for lbl, names in finished.items()}
    counts[label] += 1
    assert daemon.pending() == counts


def _assert_no_errors_about(daemon: Daemon, names: list[str]) -> None:
    """Temporaries are ignored silently: no "not queued" error may name one."""
    errors = json.dumps(daemon.status().get("recent_errors", []))
    assert [name for name in names if name in errors] == []


def _stop(daemon: Daemon) -> None:
    assert daemon.stop() == 0, daemon.log_tail()


def test_syncthing(make_daemon):
    """Syncthing: ``.syncthing.NAME.tmp`` written in blocks, then renamed into place."""
    daemon = make_daemon()
    cat = daemon.workspace / "corrections" / "Cat"
    # The folder marker, ignore file and versioned copies of a Syncthing folder whose
    # root is corrections/Cat (versions hold real photos: they must not count).
    (cat / ".stfolder").mkdir()
    (cat / ".stignore").write_text("(?d).DS_Store\n")
    (cat / ".stversions").mkdir()
    (cat / ".stversions" / "IMG_0000~20240101-120000.jpg").write_bytes(make_jpeg(1))
    # Interrupted transfers: a Unix-style and a Windows-style temporary left behind.
    (cat / ".syncthing.IMG_0999.jpg.tmp").write_bytes(make_jpeg(2))
    (cat / "~syncthing~IMG_0998.jpg.tmp").write_bytes(make_jpeg(3))
    for name in CAT_FILES:
        temp = cat / f".syncthing.{name}.tmp"
        write_in_chunks(temp, make_jpeg(_seed(name)))
        os.replace(temp, cat / name)
    _finish_with_sentinel(daemon, {"Cat": CAT_FILES})
    _assert_no_errors_about(daemon, ["IMG_0999", "IMG_0998", "IMG_0000", ".stignore"])
    _stop(daemon)


def test_nextcloud_desktop_client(make_daemon):
    """Nextcloud/ownCloud client: hidden ``.NAME.~<8 hex>`` download, then rename."""
    daemon = make_daemon()
    dog = daemon.workspace / "corrections" / "Dog"
    # The client's journal database and log in the sync root.
    (dog / ".sync_2f8c0e1a9b3d.db").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (dog / ".nextcloudsync.log").write_text("log\n")
    # Leftovers of interrupted transfers, each a complete image.
    (dog / ".IMG_0199.jpg.~5a1f2c9e").write_bytes(make_jpeg(4))
    (dog / ".~IMG_0198.jpg").write_bytes(make_jpeg(5))
    (dog / "IMG_0197.jpg.part").write_bytes(make_jpeg(6))
    (dog / "IMG_0196.jpg.ocTransferId1234567.part").write_bytes(make_jpeg(7))
    for name in DOG_FILES:
        temp = dog / f".{name}.~{_seed(name) % 0xFFFFFFFF:08x}"
        write_in_chunks(temp, make_jpeg(_seed(name)))
        os.replace(temp, dog / name)
    _finish_with_sentinel(daemon, {"Dog": DOG_FILES})
    _assert_no_errors_about(daemon, ["IMG_0199", "IMG_0198", "IMG_0197", "IMG_0196"])
    _stop(daemon)


def test_rsync(make_daemon):
    """rsync: ``.NAME.XXXXXX`` then rename; ``--delay-updates`` stages in ``.~tmp~/``."""
    daemon = make_daemon()
    cat = daemon.workspace / "corrections" / "Cat"
    dog = daemon.workspace / "corrections" / "Dog"
    # Interrupted runs: a plain temporary and a --delay-updates staging copy.
    (cat / ".IMG_0999.jpg.Qw3rTy").write_bytes(make_jpeg(8))
    (dog / ".~tmp~").mkdir()
    (dog / ".~tmp~" / "IMG_0199.jpg").write_bytes(make_jpeg(9))
    # A --partial-dir of the user's choosing (hidden, as the recipe says).
    (dog / ".rsync-partial").mkdir()
    (dog / ".rsync-partial" / "IMG_0198.jpg").write_bytes(make_jpeg(10))
    for name in CAT_FILES:
        temp = cat / f".{name}.{_seed(name) % 1000000:06d}"
        write_in_chunks(temp, make_jpeg(_seed(name)))
        os.replace(temp, cat / name)
    # --delay-updates: every file is staged first and renamed at the end of the run.
    for name in DOG_FILES:
        write_in_chunks(dog / ".~tmp~" / name, make_jpeg(_seed(name)))
    for name in DOG_FILES:
        os.replace(dog / ".~tmp~" / name, dog / name)
    _finish_with_sentinel(daemon, {"Cat": CAT_FILES, "Dog": DOG_FILES})
    _assert_no_errors_about(daemon, ["IMG_0999", "IMG_0199", "IMG_0198"])
    _stop(daemon)


def test_icloud_drive(make_daemon):
    """iCloud Drive: ``.NAME.icloud`` stubs until a file is downloaded in their place."""
    daemon = make_daemon()
    cat = daemon.workspace / "corrections" / "Cat"
    stub = plistlib.dumps({"NSURLNameKey": "x", "NSURLFileSizeKey": 1234}, fmt=plistlib.FMT_BINARY)
    # Evicted files appear as stubs first; two of them stay evicted.
    names = [*CAT_FILES, "IMG_0999.jpg", "IMG_0998.jpg"]
    for name in names:
        (cat / f".{name}.icloud").write_bytes(stub)
    # Finder's and AppleDouble's companions, the latter with image-like content.
    (cat / ".DS_Store").write_bytes(bytes(64))
    (cat / "._IMG_0001.jpg").write_bytes(make_jpeg(11))
    # Materialised ("brctl download"): the real file arrives, the stub goes.
    for name in CAT_FILES:
        write_in_chunks(cat / name, make_jpeg(_seed(name)))
        (cat / f".{name}.icloud").unlink()
    _finish_with_sentinel(daemon, {"Cat": CAT_FILES})
    _assert_no_errors_about(daemon, [".icloud", ".DS_Store", "._IMG"])
    _stop(daemon)


def test_network_share_with_polling_observer(make_daemon):
    """SMB/NFS share: no inotify events, so the polling observer; writes land in place."""
    daemon = make_daemon(observer="polling")
    daemon.wait_until("the observer in status", lambda: bool(daemon.status().get("observer")))
    assert daemon.status()["observer"]["observer"] == "polling"
    dog = daemon.workspace / "corrections" / "Dog"
    # A NAS's own bookkeeping (Synology thumbnails are real JPEGs) and recycle bin.
    (dog / "@eaDir" / "IMG_0101.jpg").mkdir(parents=True)
    (dog / "@eaDir" / "IMG_0101.jpg" / "SYNOFILE_THUMB_M.jpg").write_bytes(make_jpeg(12))
    (dog / "#recycle").mkdir()
    (dog / "#recycle" / "IMG_0199.jpg").write_bytes(make_jpeg(13))
    (dog / "Thumbs.db").write_bytes(bytes(64))
    (dog / "desktop.ini").write_text("[.ShellClassInfo]\n")
    # An SMB copy sets the final size first, then fills the file in, under its real name.
    for name in DOG_FILES:
        write_in_chunks(dog / name, make_jpeg(_seed(name)), chunks=4, preallocate=True)
    _finish_with_sentinel(daemon, {"Dog": DOG_FILES})
    _assert_no_errors_about(daemon, ["SYNOFILE", "#recycle", "Thumbs.db", "desktop.ini"])
    _stop(daemon)


def test_phone_upload_over_webdav_into_inbox(make_daemon):
    """A phone app uploading over WebDAV/SMB into ``inbox/``: one prediction per photo."""
    daemon = make_daemon()
    inbox = daemon.workspace / "inbox"
    # Leftovers of failed uploads: hidden temporaries and a partial download name.
    (inbox / ".~IMG_0999.jpg").write_bytes(make_jpeg(14))
    (inbox / ".davfs.tmp4f2a").write_bytes(make_jpeg(15))
    (inbox / "IMG_0998.jpg.partial").write_bytes(make_jpeg(16))
    (inbox / "IMG_0997.jpg.filepart").write_bytes(make_jpeg(17))
    names = [*CAT_FILES, *DOG_FILES]
    for name in names:
        temp = inbox / f".~{name}"
        write_in_chunks(temp, make_jpeg(_seed(name)))
        os.replace(temp, inbox / name)

    def predicted(expected: list[str]) -> bool:
        seen = sorted(Path(entry["path"]).name for entry in daemon.predictions())
        assert set(seen) <= set(expected), f"predictions for temporaries: {seen}"
        return seen == sorted(expected)

    daemon.wait_until(f"predictions for {names}", lambda: predicted(names))
    (inbox / "sentinel.jpg").write_bytes(make_jpeg(_seed("sentinel")))
    final = [*names, "sentinel.jpg"]
    daemon.wait_until("the sentinel's prediction", lambda: predicted(final))
    # Photos in the inbox are classified, never taken as corrections.
    assert daemon.pending() == {}
    _assert_no_errors_about(daemon, ["IMG_0999", ".davfs", "IMG_0998", "IMG_0997"])
    _stop(daemon)
