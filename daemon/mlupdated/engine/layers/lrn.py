"""Converters for the lrn layer family."""

from __future__ import annotations
