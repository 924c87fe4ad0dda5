"""Converters for the inner product layer family."""

from __future__ import annotations
