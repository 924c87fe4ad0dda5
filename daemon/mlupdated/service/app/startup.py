"""The daemon's first start-up steps: logging as the config says, and the model store,
repaired and checked, before any other part starts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...logs import configure_logging
from ..store import ModelStore
from ..update import check_overrides, remove_stale_candidates

if TYPE_CHECKING:
    from ..config import Config
    from ..workspace import Workspace

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logs(config: Config) -> None:
    """Logging in the config's format and level."""
    fmt = config.daemon.log_format
    configure_logging(
        json=None if fmt == "auto" else fmt == "json",
        level=LOG_LEVELS.get(config.daemon.log_level, logging.INFO),
    )


def open_store(ws: Workspace, config: Config, log: Any) -> ModelStore:
    """The store after its crash recovery, with the config's overrides checked against
    its current model and the leftovers of an interrupted run removed."""
    store = ModelStore(ws)
    repaired = _loggable(store.recover())
    if repaired:
        log.info("model store repaired", **repaired)
    # Refused before anything starts (a value the model forbids would fail every
    # run), and only now: the check reads current.mlmodel, which recover() repairs.
    check_overrides(config, model_path=Path(ws.current_model))
    stale = remove_stale_candidates(Path(ws.state))
    if stale:
        log.info("removed leftovers of an interrupted run", files=[p.name for p in stale])
    return store


def _loggable(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v}
    return {"result": str(data)}
