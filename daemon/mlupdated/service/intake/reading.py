"""Reading a waiting file: decode and hash it on a reader thread, two at a time.

Decoding and hashing run off the intake worker thread so that a read that blocks (a
cloud placeholder being downloaded, a hung network share) never stalls intake; the
outcome comes back to the worker as a ``ReadDone`` event, and ``StabilityWait`` decides
what it means. A read that takes long is reported once, and the file keeps waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ImageError
from .events import ReadDone, ReadResult
from .filters import check_image, sha256_file, show_path
from .waiting import Candidate, FileSig, Read

# Two at a time: about what two cores decode, and a stuck read cannot take more than
# its slot.
MAX_READS = 2
SLOW_READ_SECONDS = 30.0


class Readers:
    """The reader threads under way and the files in line for one (worker thread only;
    each reader thread only runs ``_read`` and posts its outcome)."""

    def __init__(self, *, log: Any, post: Callable[[ReadDone], None]) -> None:
        self._log = log
        self._post = post
        self._reading: dict[str, Read] = {}
        self._to_read: deque[str] = deque()

    def busy(self) -> bool:
        """True when every reader is taken."""
        return len(self._reading) >= MAX_READS

    def wait_turn(self, cand: Candidate) -> None:
        """Put ``cand`` in line for a free reader (once)."""
        if not cand.waiting_for_reader:
            cand.waiting_for_reader = True
            self._to_read.append(cand.rel)

    def has_turn(self) -> bool:
        """True when a file is in line and a reader is free."""
        return bool(self._to_read) and len(self._reading) < MAX_READS

    def next_in_line(self) -> str:
        """The path first in line (taken out of the line)."""
        return self._to_read.popleft()

    def start(
        self,
        cand: Candidate,
        path: Path,
        sig: FileSig,
        follow: bool,
        now: float,
        *,
        max_pixels: int,
        target_size: tuple[int, int] | None,
    ) -> float:
        """Start reading ``cand`` at ``sig``; returns when to look at it again."""
        read = Read(sig=sig, started=now)
        cand.reading = read
        self._reading[cand.rel] = read
        thread = threading.Thread(
            target=self._read,
            args=(cand.rel, path, read, follow, max_pixels, target_size),
            name="mlupdated-intake-read",
            daemon=True,
        )
        thread.start()
        return now + SLOW_READ_SECONDS

    def _read(
        self,
        rel: str,
        path: Path,
        read: Read,
        follow: bool,
        max_pixels: int,
        target_size: tuple[int, int] | None,
    ) -> None:
        """Reader thread: decode and hash, then hand the outcome back to the worker."""
        try:
            check_image(path, max_pixels=max_pixels, target_size=target_size)
            digest, size = sha256_file(path, follow_symlinks=follow)
            outcome = ReadResult("ok", digest=digest, size=size)
        except ImageError as exc:
            outcome = ReadResult("undecodable", reason=exc.reason)
        except PermissionError:
            outcome = ReadResult("denied")
        except FileNotFoundError:
            outcome = ReadResult("gone")
        except OSError as exc:
            outcome = ReadResult("error", reason=f"cannot read ({exc.strerror or exc})")
        except Exception as exc:  # a decoder bug must not lose the file: retry later
            outcome = ReadResult("error", reason=f"cannot read ({exc})")
        self._post(ReadDone(rel, read, outcome))

    def finished(self, rel: str, read: Read) -> None:
        """A reader finished ``read`` of ``rel``: its slot is free."""
        if self._reading.get(rel) is read:
            del self._reading[rel]

    def still_reading(self, cand: Candidate, now: float) -> float:
        """``cand`` is due while its read runs: say once that it is slow; returns when to
        look at it again."""
        read = cand.reading
        assert read is not None
        if not read.slow_logged and now - read.started >= SLOW_READ_SECONDS:
            read.slow_logged = True
            self._log.warning(
                f"waiting for {show_path(cand.rel)}: reading it has taken "
                f"{now - read.started:.0f} s (a cloud placeholder not downloaded yet?)",
                path=cand.rel,
            )
        return now + SLOW_READ_SECONDS
