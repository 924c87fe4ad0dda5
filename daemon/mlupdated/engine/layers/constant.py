"""Converters for the constant layer family."""

from __future__ import annotations
