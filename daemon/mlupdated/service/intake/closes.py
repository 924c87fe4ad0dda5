"""Files closed after writing: the hint that ends a stability wait early.

On Linux, inotify reports a close after writing (``IN_CLOSE_WRITE``). A file whose
writer closed it, and that nothing wrote to since, need not sit out the rest of its
``stability_seconds``: it is read at once, and taken if it decodes and did not change
while it was read. Any later write event clears the mark (a writer that closes between
chunks is back to the plain wait), a rename carries it (sync tools write a hidden
temporary file, close it, and rename it in), and a file that does not decode loses it.
Polling observers never report closes: there the wait is unchanged.
"""

from __future__ import annotations

# Marks of files never taken (hidden temporaries deleted by their writer) must not
# pile up: the oldest go first.
MAX_MARKS = 10_000


class CloseMarks:
    """Workspace-relative paths closed after writing and not written since."""

    def __init__(self, *, limit: int = MAX_MARKS) -> None:
        self._marks: dict[str, None] = {}
        self._limit = limit

    def __contains__(self, rel: object) -> bool:
        return rel in self._marks

    def __len__(self) -> int:
        return len(self._marks)

    def mark(self, rel: str) -> None:
        """``rel`` was closed after writing."""
        self._marks.pop(rel, None)
        self._marks[rel] = None
        while len(self._marks) > self._limit:
            del self._marks[next(iter(self._marks))]

    def clear(self, rel: str) -> None:
        """``rel`` was written to (or is done with): it is not known complete."""
        self._marks.pop(rel, None)

    def carry(self, src: str, dest: str) -> None:
        """``src`` was renamed to ``dest``: the mark (or its absence) goes with it."""
        if src in self._marks:
            self.clear(src)
            self.mark(dest)
        else:
            self.clear(dest)
