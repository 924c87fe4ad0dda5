"""Logging: structlog, one JSON object per line on stderr, or a human format on a terminal.

Services (systemd's journal, launchd's log files) collect stderr; a person at a
terminal reads the console renderer. Every module logs through ``get_logger``.

structlog is imported at the first line logged, not when a module asks for its logger:
a one-shot command that logs nothing (``predict`` on a good photo) starts about 35 ms
sooner without it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    # What ``get_logger`` hands out: the type to name where a logger is passed in.
    Logger = FilteringBoundLogger

_configured = False


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """Set up structlog once. ``json=None`` picks JSON unless stderr is a terminal."""
    import structlog

    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def _bound(name: str | None, context: dict[str, Any]) -> Logger:
    import structlog

    if not _configured:
        configure_logging()
    log = structlog.get_logger()
    if name:
        log = log.bind(component=name)
    return log.bind(**context) if context else log


class _Deferred:
    """A logger that becomes structlog's at its first use (see the module's docstring)."""

    __slots__ = ("_name", "_context", "_log")

    def __init__(self, name: str | None, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context
        self._log: Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._log is None:
            self._log = _bound(self._name, self._context)
        return getattr(self._log, attribute)


def get_logger(name: str | None = None, **context: Any) -> Logger:
    """A structlog logger bound to ``component=name`` and ``context``."""
    return _Deferred(name, context)  # type: ignore[return-value]
