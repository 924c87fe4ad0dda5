"""Converters for the slice split layer family."""

from __future__ import annotations
