"""Converters for the scale bias layer family."""

from __future__ import annotations
