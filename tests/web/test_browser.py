"""End to end in a real browser: the real daemon, the real ``mlupdated web`` process,
headless Chromium driven by Playwright.

1. open the printed login URL; 2. see a dropped cat photo labelled; 3. press the Dog
key; 4. the copy appears in ``corrections/Dog/``; 5. after the update the page shows
version 2.

With ``MLUPDATED_WEB_SCREENSHOTS=DIR`` the same run drops a few more photos, files a
few more corrections (each one an update) and saves a screenshot of each page to
``DIR/web-photos.png``, ``web-corrections.png`` and ``web-models.png`` (the README's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mlupdated import cli as mlupdated_cli
from mlupdated.service.workspace import init_workspace

from tests.daemon.conftest import Workspace, daemons  # noqa: F401
from tests.helpers.shared_data import PETS, require
from tests.web.browser import WebProcess, chromium_context, require_browser, wait_until

SCREENSHOTS_ENV = "MLUPDATED_WEB_SCREENSHOTS"
# Generous: two shared cores may be busy with other suites; nothing here is a timing
# assertion, only the longest we wait for a condition before calling it broken.
WAIT_MS = 120_000


def _pets(kind: str, count: int) -> list[Path]:
    folder = require(PETS) / "eval" / kind
    return sorted(folder.glob("*.jpg"))[:count]


@pytest.fixture
def bundled(tmp_path: Path) -> Workspace:
    """A workspace around the bundled default model: the page shows what a user sees."""
    root = tmp_path / "ws"
    init_workspace(root, model_path=mlupdated_cli.bundled_model_path())
    workspace = Workspace(root)
    workspace.write_config()
    return workspace


@pytest.mark.slow
def test_review_page_in_a_real_browser(bundled, daemons, tmp_path) -> None:  # noqa: F811
    expect = require_browser().expect
    shots = os.environ.get(SCREENSHOTS_ENV)
    cat = _pets("Cat", 1)[0]
    workspace = bundled
    # One correction is enough for an update, soon after it is queued.
    workspace.write_config(
        update={"min_batch": 1, "quiet_seconds": 0.5},
        intake={"stability_seconds": 0.5},
    )
    daemon = daemons(workspace).start()
    web = WebProcess(workspace.root)
    try:
        url = web.login_url()
        with chromium_context(tmp_path / "profile") as context:
            page = context.new_page()
            # 1. The one-time login URL opens the photos page.
            page.goto(url)
            page.wait_for_url("**/photos**")
            # 2. A cat photo dropped into the inbox appears, labelled (live update).
            shutil.copy2(cat, workspace.root / "inbox" / cat.name)
            daemon.wait_for(event="inbox: classified", path=f"inbox/{cat.name}", timeout=120)
            card = page.locator(".card", has_text=cat.name)
            card.locator(".label").wait_for(timeout=WAIT_MS)
            # The bundled model knows a cat.
            assert card.locator(".label").inner_text() == "Cat"
            assert "v1" in card.locator(".ver").inner_text()
            # 3. + 4. The Dog key files a copy into corrections/Dog/.
            dog = workspace.corrections / "Dog"

            def filed() -> list[Path]:
                found = [p for p in dog.iterdir() if not p.name.startswith(".")]
                if not found:
                    page.keyboard.press("d")  # again if a live reload swallowed it
                return found

            page.keyboard.press("d")
            (copy,) = wait_until(filed, timeout=60, what="the copy in corrections/Dog/", interval=2)
            assert copy.read_bytes() == cat.read_bytes()
            assert copy.suffix == ".jpg"
            # 5. The daemon updates; the page shows version 2 by itself.
            finished = daemon.wait_for(event="update finished", timeout=180)
            assert finished["outcome"] == "promoted", finished.get("reason")
            # (Playwright's string waits would need 'unsafe-eval'; the page's CSP has none.)
            expect(page.locator("#current-version")).to_have_text(
                "model version 2", timeout=WAIT_MS
            )
            page.goto(url.split("/login")[0] + "/corrections")
            assert "trained into version 2" in page.content()
            if shots:
                base = url.split("/login")[0]
                _screenshots(page, expect, Path(shots), workspace, daemon, base)
    finally:
        web.stop()


def _screenshots(page, expect, out: Path, workspace, daemon, base: str) -> None:
    """More photos and corrections (each one an update), then one picture per page."""
    out.mkdir(parents=True, exist_ok=True)
    cats, dogs = _pets("Cat", 6)[1:], _pets("Dog", 5)
    photos = cats + dogs
    for photo in photos:
        shutil.copy2(photo, workspace.root / "inbox" / photo.name)
    for photo in photos:
        daemon.wait_for(event="inbox: classified", path=f"inbox/{photo.name}", timeout=120)
    page.goto(base + "/photos")
    expected = 2
    for photo in (cats[0], dogs[0], cats[1], dogs[1]):
        truth = "Cat" if photo in cats else "Dog"
        mark = daemon.mark()
        card = page.locator(".card", has_text=photo.name)
        card.locator(f"button:has-text('{truth}')").click()
        page.wait_for_load_state()
        done = daemon.wait_for(event="update finished", since=mark, timeout=180)
        if done["outcome"] == "promoted":  # the gate may keep the current model instead
            expected = done["version"]
        expect(page.locator("#current-version")).to_have_text(
            f"model version {expected}", timeout=WAIT_MS
        )
    # Paused from the page (the daemon hears it), one more correction stays pending.
    page.goto(base + "/models")
    mark = daemon.mark()
    page.locator("button:has-text('Pause updates')").click()
    daemon.wait_for(event="paused", since=mark, timeout=60)
    page.goto(base + "/photos")
    page.locator(".card", has_text=cats[2].name).locator("button:has-text('Cat')").click()
    daemon.wait_for(event="correction queued", since=mark, timeout=60)
    page.goto(base + "/photos")
    page.locator(".card").nth(1).click()
    page.screenshot(path=str(out / "web-photos.png"))
    page.goto(base + "/corrections")
    page.screenshot(path=str(out / "web-corrections.png"))
    page.goto(base + "/models")
    page.locator("img.plot").wait_for()
    page.screenshot(path=str(out / "web-models.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/photos")
    page.screenshot(path=str(out / "web-phone.png"))
