"""The system's Chromium driven by Playwright, and the real ``mlupdated web`` process.

Playwright never downloads a browser here: it starts Debian's ``chromium`` by its
executable path, headless, with a fresh profile and everything that phones home
switched off. Where the browser (or Playwright) is missing the test skips with one
line; in CI (``CI=true``) it fails instead, since CI installs the browser.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("MLUPDATED_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOGIN_LINE = re.compile(r"log in once at: (http://\S+)")


def require_browser() -> Any:
    """Playwright's sync API module; skip (fail in CI) without it or the browser."""
    reason = None
    try:
        from playwright import sync_api
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
        sync_api = None
    if reason is None and not CHROMIUM.is_file():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI must have it)", pytrace=False)
        pytest.skip(reason)
    return sync_api


@contextmanager
def chromium_context(profile: Path, *, width: int = 1280, height: int = 860) -> Iterator[Any]:
    """A fresh headless Chromium browser context (its own profile directory)."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()


class WebProcess:
    """One ``mlupdated web --port 0`` child; its login URL read from its output."""

    def __init__(self, workspace: Path, *options: str) -> None:
        self.workspace = workspace
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlupdated.cli",
                "web",
                "--workspace",
                str(workspace),
                "--port",
                "0",
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def login_url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    found = LOGIN_LINE.search(line)
                    if found:
                        return found.group(1)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        "mlupdated web printed no login URL:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(remaining, 0.5))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)


def wait_until(condition: Any, *, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
