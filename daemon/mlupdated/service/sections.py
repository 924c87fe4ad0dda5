"""Rule objects built from a config section, field by field.

The scheduler and the gate each read a slice of one ``Config`` section into a small
frozen dataclass of their own, so that they can be tested without a whole config.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], section: Any) -> T:
    """An instance of the dataclass ``cls`` whose fields are taken from the attributes
    of the same names on ``section`` (a ``config.update`` or ``config.gate``)."""
    return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})  # type: ignore[arg-type]
