"""Fixtures of the web page's tests: a workspace made by the daemon tests' fixtures, the
application on it behind Starlette's TestClient, and photos the "daemon" classified
(written with the queue's own code, as the daemon writes them)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlupdated.service.queue import Queue
from mlupdated.service.workspace import Workspace as ServiceWorkspace
from mlupdated.web import create_app
from mlupdated.web.security import allowed_hosts

# Starlette's TestClient asks for a renamed httpx; the one installed works the same.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

from tests.daemon.conftest import make_photo, model_path, sha256_of, workspace  # noqa: E402, F401

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    """The application, a client logged in to it, and the workspace behind it."""

    client: TestClient
    app: object
    root: Path

    @property
    def ws(self) -> ServiceWorkspace:
        return ServiceWorkspace(self.root)

    def login(self) -> None:
        code = self.app.state.web.codes.issue()
        done = self.client.get(f"/login?code={code}", follow_redirects=False)
        assert done.status_code == 303, done.text

    def csrf(self, page: str = "/photos") -> str:
        found = _CSRF.search(self.client.get(page).text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None):
        fields = {"csrf": self.csrf() if csrf is None else csrf, **(data or {})}
        return self.client.post(path, data=fields, follow_redirects=False)

    def classified(
        self, name: str, *, kind: str = "red", seed: int = 1, label: str = "Cat", p: float = 0.9
    ) -> tuple[int, Path, str]:
        """Put a photo in the inbox and record the prediction the daemon would; return
        (photo id, path, sha256)."""
        path = make_photo(self.root / "inbox" / name, kind, seed)
        digest = sha256_of(path)
        other = "Dog" if label == "Cat" else "Cat"
        with Queue(self.ws.db_path) as queue:
            queue.record_prediction(
                path=f"inbox/{name}",
                sha256=digest,
                label=label,
                probabilities={label: p, other: 1 - p},
                version=1,
            )
            (row,) = queue.db.read("SELECT rowid FROM predictions WHERE sha256 = ?", (digest,))
        return int(row[0]), path, digest


@pytest.fixture
def site(workspace) -> Iterator[Site]:  # noqa: F811
    app = create_app(ServiceWorkspace(workspace.root), hosts=allowed_hosts("127.0.0.1", PORT))
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield Site(client=client, app=app, root=workspace.root)


@pytest.fixture
def logged_in(site: Site) -> Site:
    site.login()
    return site
