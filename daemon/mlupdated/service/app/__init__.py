"""``mlupdated run``: the daemon.

``daemon`` is the lifecycle as a ladder (start-up, loop, shut-down); the parts it
composes each turn live beside it: ``requests`` (what signals asked for: stop, reload,
update now, re-read the pause flag), ``health`` (the per-turn checks: state/ still
ours, the store as people left it, the intake's observer alive, ``status.json``) and
``startup`` (logging, and the store opened and recovered before anything else runs).
"""

from __future__ import annotations

from .daemon import EXIT_STATE_LOST, UMASK_BITS, Daemon

__all__ = ["EXIT_STATE_LOST", "UMASK_BITS", "Daemon"]
