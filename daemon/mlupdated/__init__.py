"""mlupdated: keep a Core ML image classifier personal to its owner."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# onnxruntime starts a telemetry client when it is imported, which writes a device id
# and a database under the user's cache and a session file in the temp folder: data
# outside the workspace and our cache, about a user who asked for none of it. The
# variable must be set before onnxruntime's first import; the package's own import
# comes first in every process of ours, and children inherit it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
