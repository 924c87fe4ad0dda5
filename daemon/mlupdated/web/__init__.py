"""``mlupdated web``: a review page for one workspace, served by a separate process.

It reads the workspace (the database read-only, ``predictions.jsonl``, the manifest)
and acts only through the workspace's own interfaces: a correction is a copy of an
inbox photo into ``corrections/<Label>/``; update-now, pause, resume and rollback call
the same code as the CLI. The daemon stays the only writer of models and state.

``app`` builds the Starlette application; ``security`` holds the guards; ``data``,
``files``, ``thumbs`` and ``plot`` read, copy and draw; ``routes_*`` are the pages.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
