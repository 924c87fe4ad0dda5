"""Converters for the reshape layer family."""

from __future__ import annotations
