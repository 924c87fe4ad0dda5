"""Converters for the padding layer family."""

from __future__ import annotations
