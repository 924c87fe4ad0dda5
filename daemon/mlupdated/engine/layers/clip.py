"""Converters for the clip layer family."""

from __future__ import annotations
