"""Converters for the arithmetic layer family."""

from __future__ import annotations
