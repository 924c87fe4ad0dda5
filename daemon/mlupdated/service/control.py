"""``mlupdated update-now | pause | resume``: talk to the running daemon by signals.

The daemon's pid is in the workspace lock file, and only trusted while the lock is
held (a pid alone may have been reused). ``update-now`` sends SIGUSR1. ``pause`` and
``resume`` set or clear the flag file ``state/paused`` and send SIGUSR2 so the daemon
re-reads it; the flag outlives restarts, so a paused daemon stays paused.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError, WorkspaceError
from ..fsutil import atomic_write_bytes
from .lock import lock_holder

if TYPE_CHECKING:
    from .workspace import Workspace

PAUSE_FLAG = "paused"
UPDATE_NOW_SIGNAL = signal.SIGUSR1
PAUSE_CHANGED_SIGNAL = signal.SIGUSR2


def pause_flag(workspace: Workspace) -> Path:
    """The flag file whose presence means "scheduled updates are paused"."""
    return Path(workspace.state) / PAUSE_FLAG


def is_paused(workspace: Workspace) -> bool:
    """True when the pause flag is set."""
    return pause_flag(workspace).exists()


def daemon_pid(workspace: Workspace) -> int | None:
    """The pid of the daemon holding the workspace lock, or None."""
    pid = lock_holder(Path(workspace.lock_path))
    return pid if pid and pid > 0 else None


def check_control(workspace: Workspace) -> None:
    """Refuse a directory that has no ``state/`` folder."""
    if not Path(workspace.state).is_dir():
        raise WorkspaceError(
            "not a workspace (no state/ folder); run 'mlupdated init'", path=workspace.root
        )


def request_update(workspace: Workspace) -> int:
    """Ask the running daemon to update now; return its pid."""
    check_control(workspace)
    pid = daemon_pid(workspace)
    if pid is None:
        raise WorkspaceError("no daemon is running on this workspace", path=workspace.root)
    _signal(pid, UPDATE_NOW_SIGNAL)
    return pid


def set_paused(workspace: Workspace, paused: bool) -> int | None:
    """Set or clear the pause flag and tell the daemon; return its pid (None: none runs)."""
    check_control(workspace)
    pid = daemon_pid(workspace)
    flag = pause_flag(workspace)
    if paused:
        atomic_write_bytes(flag, f"{time.time()}\n".encode())
    else:
        try:
            flag.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot remove the pause flag: {exc.strerror}", path=flag) from exc
    if pid is not None:
        _signal(pid, PAUSE_CHANGED_SIGNAL)
    return pid


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError as exc:
        raise WorkspaceError(f"the daemon (pid {pid}) is gone") from exc
    except PermissionError as exc:
        raise WorkspaceError(f"not allowed to signal the daemon (pid {pid})") from exc
