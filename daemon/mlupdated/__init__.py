"""mlupdated: keep a Core ML image classifier personal to its owner."""

from __future__ import annotations

__version__ = "0.1.0"
