"""Rolling back, and what it means for the corrections.

A correction is ``trained`` because a model version learned it. After a rollback from
version 5 to version 4, version 5 is no longer in the live model's line, so the
corrections trained into it go back to ``pending``: the next update learns them onto
version 4 (the user rolled back a *model*, not their corrections; to drop a correction,
delete its file). The rollback and the re-queueing happen under the store's lock, which
the daemon also holds from its last check of the current version to marking a promoted
run's corrections trained, so a rollback never interleaves with a promotion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..queue import Correction, Queue
from ..store import ModelStore, VersionEntry

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass(frozen=True)
class Rollback:
    """What a rollback did: the version before, the version after, and the corrections
    that are pending again."""

    before: int
    after: int
    requeued: list[Correction]


def roll_back(workspace: Workspace, to: int | None = None) -> Rollback:
    """Make ``to`` (default: the previous promoted version) current and send the
    corrections learned only by versions outside its line back to pending."""
    store = ModelStore(workspace)
    with store.locked():
        before = store.current_version()
        after = store.rollback(to)
        queue = Queue(workspace.db_path)
        try:
            requeued = queue.requeue_trained(in_line(store.manifest(), after))
        finally:
            queue.close()
    return Rollback(before, after, requeued)


def in_line(entries: list[VersionEntry], version: int) -> Callable[[int], bool]:
    """A test "was ``v`` learned into ``version``?": ``version`` and its ancestors,
    following ``parent``. Where the chain breaks (an entry removed by retention, a
    version recovered or placed by hand with no parent), every older version counts as
    an ancestor: versions are numbered in order, so nothing is sent back that the
    model may still hold."""
    parents = {e.version: e.parent for e in entries}
    line = {version}
    floor = 0
    step: int | None = version
    while step is not None:
        line.add(step)
        if step not in parents:
            floor = step
            break
        parent = parents[step]
        if parent is None:
            floor = step
            break
        step = parent
    return lambda v: v in line or v < floor
