"""Converters for the pooling layer family."""

from __future__ import annotations
