"""Converters for the convolution layer family."""

from __future__ import annotations
