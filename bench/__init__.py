"""Benchmarks of mlupdated against what users would otherwise run, side by side.

``python -m bench`` runs every section, prints a table and writes
``docs/benchmarks.md``. Every figure is a ratio of things measured in the same run.
"""
