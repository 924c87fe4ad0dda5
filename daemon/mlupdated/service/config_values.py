"""Validators of config values: each returns the clean value or raises ``Bad`` with
what it expected (``config.config_from_dict`` turns that into one ``ConfigError`` line
naming the file and the key)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class Bad(Exception):
    """A value that is not what the key expects; ``expected`` says what would be."""

    def __init__(self, expected: str) -> None:
        self.expected = expected
        super().__init__(expected)


Validator = Callable[[Any], Any]


def integer(minimum: int) -> Validator:
    """An integer ≥ ``minimum`` (never a boolean)."""

    def check(value: Any) -> int:
        # TOML booleans are Python ints; "true" is never a count.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Bad(f"an integer ≥ {minimum}")
        return value

    return check


def number(minimum: float, *, strict: bool = False, maximum: float | None = None) -> Validator:
    """A finite number ≥ (``strict``: >) ``minimum``, below ``maximum`` if given."""
    low = f"> {minimum:g}" if strict else f"≥ {minimum:g}"
    expected = f"a number {low}" + (f" and < {maximum:g}" if maximum is not None else "")

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Bad(expected)
        number = float(value)
        if not math.isfinite(number) or number < minimum or (strict and number == minimum):
            raise Bad(expected)
        if maximum is not None and number >= maximum:
            raise Bad(expected)
        return number

    return check


def choice(options: tuple[str, ...]) -> Validator:
    """One of ``options``."""

    expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise Bad(expected)
        return value

    return check


def boolean(value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Bad("true or false")
    return value


def globs(value: Any) -> tuple[str, ...]:
    """A list of glob patterns."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Bad("a list of non-empty glob strings")
    return tuple(value)


def cron(value: Any) -> str:
    """A crontab expression APScheduler accepts."""
    if not isinstance(value, str) or not value.strip():
        raise Bad('a crontab expression like "0 3 * * *"')
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise Bad(f'a valid crontab expression like "0 3 * * *" ({exc})') from None
    return value
