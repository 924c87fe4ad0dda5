"""Converters for the softmax layer family."""

from __future__ import annotations
