"""Converters for the concat layer family."""

from __future__ import annotations
