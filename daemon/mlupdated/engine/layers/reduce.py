"""Converters for the reduce layer family."""

from __future__ import annotations
