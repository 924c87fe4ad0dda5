"""``mlupdated web`` as a command: where it listens, what it prints, what it refuses."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from mlupdated import cli

from tests.web.browser import WebProcess


def _get(url: str, path: str, *, host: str | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Host": host} if host is not None else {}
    connection.request("GET", path, headers=headers)
    return connection.getresponse()


def test_a_remote_address_needs_allow_remote(workspace, capsys) -> None:
    code = cli.main(["web", "--workspace", str(workspace.root), "--host", "0.0.0.0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "--allow-remote" in err and "SSH tunnel" in err


def test_a_port_out_of_range_is_one_line(workspace, capsys) -> None:
    code = cli.main(["web", "--workspace", str(workspace.root), "--port", "70000"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--port 70000" in err


def test_not_a_workspace_is_one_line(tmp_path, capsys) -> None:
    code = cli.main(["web", "--workspace", str(tmp_path / "nothing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a workspace" in err


def test_the_process_prints_a_login_url_that_works_once(workspace) -> None:
    web = WebProcess(workspace.root)
    try:
        url = web.login_url()
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1"
        token = workspace.root / "state" / "web-token"
        assert token.stat().st_mode & 0o777 == 0o600
        first = _get(url, f"{parts.path}?{parts.query}")
        assert first.status == 303 and first.getheader("location") == "/photos"
        assert "httponly" in first.getheader("set-cookie").lower()
        again = _get(url, f"{parts.path}?{parts.query}")
        assert again.status == 403
        foreign = _get(url, "/login", host="rebind.example")
        assert foreign.status == 400
        assert foreign.getheader("server") is None
    finally:
        web.stop()


def test_allow_remote_listens_everywhere_with_a_warning(workspace) -> None:
    web = WebProcess(workspace.root, "--host", "0.0.0.0", "--allow-remote")
    try:
        url = web.login_url()
        assert any(line.startswith("warning: listening on 0.0.0.0") for line in web.lines)
        assert _get(url, "/login").status == 200
        assert _get(url, "/login", host="rebind.example").status == 400
    finally:
        web.stop()
