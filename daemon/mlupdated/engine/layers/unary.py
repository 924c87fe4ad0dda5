"""Converters for the unary layer family."""

from __future__ import annotations
