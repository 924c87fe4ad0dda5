"""Converters for the matmul layer family."""

from __future__ import annotations
