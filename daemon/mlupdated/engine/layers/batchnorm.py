"""Converters for the batchnorm layer family."""

from __future__ import annotations
