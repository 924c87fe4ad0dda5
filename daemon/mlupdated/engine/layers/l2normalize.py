"""Converters for the l2normalize layer family."""

from __future__ import annotations
