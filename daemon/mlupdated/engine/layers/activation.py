"""Converters for the activation layer family."""

from __future__ import annotations
