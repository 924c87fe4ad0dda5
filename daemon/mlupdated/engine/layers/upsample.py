"""Converters for the upsample layer family."""

from __future__ import annotations
