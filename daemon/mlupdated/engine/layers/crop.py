"""Converters for the crop layer family."""

from __future__ import annotations
