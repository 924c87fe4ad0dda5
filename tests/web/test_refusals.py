"""Each refusal the issue lists: no login, wrong CSRF, a foreign Host, path traversal,
an id that does not exist, a photo deleted under the page, oversized requests. Each is
a clear 4xx line, never a traceback."""

from __future__ import annotations

import os

import pytest
from mlupdated.service.queue import Queue
from mlupdated.service.workspace import is_folder_name
from mlupdated.web.files import WebError, file_correction
from mlupdated.web.security import MAX_BODY, MAX_QUERY

from tests.daemon.conftest import make_photo, sha256_of


def _post_routes(app) -> list[str]:
    paths = []
    for route in app.routes:
        if "POST" in (getattr(route, "methods", None) or ()) and route.path != "/login":
            paths.append(route.path.replace("{photo_id:int}", "1"))
    return paths


def _clean(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_without_a_session_only_the_login_page_answers(site) -> None:
    photo_id, _, _ = site.classified("a.png")
    for page in (
        "/photos",
        "/corrections",
        "/models",
        "/models/plot.svg",
        f"/photos/{photo_id}/thumb",
    ):
        done = site.client.get(page, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/login", page
    done = site.client.get("/api/state")
    _clean(done)
    assert done.status_code == 401
    for path in _post_routes(site.app):
        done = site.client.post(path, data={"csrf": "x", "label": "Dog"})
        _clean(done)
        assert done.status_code == 401, path
    assert not any((site.root / "corrections" / "Dog").iterdir())
    # A forged session cookie is no session.
    site.client.cookies.set("mlupdated_session", "forged")
    assert site.client.get("/photos", follow_redirects=False).status_code == 303


def test_a_login_code_works_once(site) -> None:
    code = site.app.state.web.codes.issue()
    assert site.client.get(f"/login?code={code}", follow_redirects=False).status_code == 303
    site.client.cookies.clear()
    again = site.client.get(f"/login?code={code}", follow_redirects=False)
    assert again.status_code == 403 and "already used" in again.text
    wrong = site.client.get("/login?code=guess", follow_redirects=False)
    assert wrong.status_code == 403
    no_nonce = site.client.post("/login", data={"token": "x"})
    assert no_nonce.status_code == 403 and "expired" in no_nonce.text


def test_every_action_refuses_a_wrong_or_missing_csrf_token(logged_in) -> None:
    photo_id, _, _ = logged_in.classified("a.png")
    assert photo_id == 1
    paths = _post_routes(logged_in.app)
    assert {
        "/photos/1/correct",
        "/photos/1/undo",
        "/models/rollback",
        "/control/update-now",
        "/control/pause",
        "/control/resume",
        "/logout",
    } <= set(paths)
    for path in paths:
        for fields in ({"csrf": "wrong", "label": "Dog"}, {"label": "Dog"}):
            done = logged_in.client.post(path, data=fields, follow_redirects=False)
            _clean(done)
            assert done.status_code == 403 and "CSRF" in done.text, path
    assert not any((logged_in.root / "corrections" / "Dog").iterdir())
    assert not (logged_in.root / "state" / "paused").exists()
    # The header form of the token is accepted (the same secret, another carrier).
    csrf = logged_in.csrf()
    done = logged_in.client.post(
        "/control/pause", headers={"x-csrf-token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8765", "127.0.0.1.evil.example:8765", "localhost:1", ""],
)
def test_a_foreign_host_header_is_refused(logged_in, host) -> None:
    done = logged_in.client.get("/photos", headers={"host": host})
    _clean(done)
    assert done.status_code == 400 and "Host" in done.text
    done = logged_in.client.post(
        "/control/pause", data={"csrf": logged_in.csrf()}, headers={"host": host}
    )
    assert done.status_code == 400
    assert not (logged_in.root / "state" / "paused").exists()


def test_a_cross_site_origin_is_refused(logged_in) -> None:
    done = logged_in.client.post(
        "/control/pause",
        data={"csrf": logged_in.csrf()},
        headers={"origin": "http://evil.example"},
    )
    _clean(done)
    assert done.status_code == 403
    assert not (logged_in.root / "state" / "paused").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2fapp.py",
        "/static/%2e%2e/%2e%2e/config.toml",
        "/static/app.py",
        "/static/templates%2fbase.html",
        "/photos/..%2f..%2fconfig.toml/thumb",
        "/photos/%2e%2e/thumb",
        "/photos/1%2f..%2f..%2fconfig.toml/thumb",
        "/corrections/..%2fstate%2fweb-token/thumb",
        "/state/web-token",
        "/config.toml",
    ],
)
def test_path_traversal_finds_nothing(logged_in, path) -> None:
    logged_in.classified("a.png")
    done = logged_in.client.get(path)
    _clean(done)
    assert done.status_code == 404
    token = (logged_in.root / "state" / "web-token").read_text().strip()
    assert token not in done.text


def test_a_database_path_outside_the_inbox_is_never_served(logged_in, tmp_path) -> None:
    secret = tmp_path / "secret.png"
    make_photo(secret, "red", 5)
    (logged_in.root / "inbox" / "link.png").symlink_to(secret)
    with Queue(logged_in.ws.db_path) as queue:
        for index, path in enumerate(
            ("inbox/../config.toml", "inbox/link.png", "models/current.mlmodel")
        ):
            queue.record_prediction(
                path=path,
                sha256=f"{index:064x}",
                label="Cat",
                probabilities={"Cat": 1.0, "Dog": 0.0},
                version=1,
            )
        ids = [r[0] for r in queue.db.read("SELECT rowid FROM predictions ORDER BY rowid")]
    for photo_id in ids:
        done = logged_in.client.get(f"/photos/{photo_id}/thumb")
        _clean(done)
        assert done.status_code in (403, 404)
        done = logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
        _clean(done)
    assert not any((logged_in.root / "corrections" / "Dog").iterdir())


@pytest.mark.parametrize("photo_id", ["999", "0", "99999999999999999999999999"])
def test_an_id_that_does_not_exist(logged_in, photo_id) -> None:
    logged_in.classified("a.png")
    for done in (
        logged_in.client.get(f"/photos/{photo_id}/thumb"),
        logged_in.client.get(f"/corrections/{photo_id}/thumb"),
        logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"}),
        logged_in.post(f"/photos/{photo_id}/undo"),
    ):
        _clean(done)
        assert done.status_code == 404
        assert "no photo with id" in done.text or "no correction with id" in done.text


def test_a_photo_deleted_under_the_page(logged_in) -> None:
    photo_id, path, _ = logged_in.classified("gone.png")
    kept_id, _, _ = logged_in.classified("kept.png", seed=4)
    os.unlink(path)
    done = logged_in.client.get(f"/photos/{photo_id}/thumb")
    _clean(done)
    assert done.status_code == 404 and "no longer there" in done.text
    done = logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    _clean(done)
    assert done.status_code == 404 and "no longer there" in done.text
    assert not any((logged_in.root / "corrections" / "Dog").iterdir())
    page = logged_in.client.get("/photos")
    assert page.status_code == 200 and f'id="p{kept_id}"' in page.text


def test_a_photo_changed_since_it_was_classified_is_not_filed(logged_in) -> None:
    photo_id, path, digest = logged_in.classified("changed.png")
    make_photo(path, "blue", 77)
    assert sha256_of(path) != digest
    done = logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    _clean(done)
    assert done.status_code == 409 and "changed since it was classified" in done.text
    assert not any((logged_in.root / "corrections" / "Dog").iterdir())


def test_an_unknown_label_is_refused(logged_in) -> None:
    photo_id, _, _ = logged_in.classified("a.png")
    for label in ("Horse", "../Dog", "", "Dog/../../state"):
        done = logged_in.post(f"/photos/{photo_id}/correct", {"label": label})
        _clean(done)
        assert done.status_code == 400
    assert sorted(p.name for p in (logged_in.root / "corrections").iterdir()) == ["Cat", "Dog"]


def test_a_model_label_that_is_not_a_folder_name_files_nothing(logged_in, tmp_path) -> None:
    # A model may carry any string as a class label; the page never makes a path of it.
    _, _, digest = logged_in.classified("b.png")
    for label in ("..", "../../state", "a/b", "a\0b", ".hidden"):
        with pytest.raises(WebError) as refused:
            file_correction(
                logged_in.ws, relative="inbox/b.png", sha256=digest, label=label, labels=[label]
            )
        assert refused.value.status == 400 and "cannot name a folder" in str(refused.value)
    assert sorted(p.name for p in (logged_in.root / "corrections").iterdir()) == ["Cat", "Dog"]
    assert not (logged_in.root.parent / "state").exists()  # where "../../state" leads
    assert is_folder_name("Cat") and is_folder_name("Grüne Katze")


def test_oversized_and_malformed_requests(logged_in) -> None:
    csrf = logged_in.csrf()
    big = logged_in.client.post("/control/pause", data={"csrf": csrf, "x": "a" * (MAX_BODY + 1)})
    _clean(big)
    assert big.status_code == 413

    def chunks():
        yield b"csrf=" + csrf.encode() + b"&x="
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"a" * 1024

    chunked = logged_in.client.post(
        "/control/pause",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _clean(chunked)
    assert chunked.status_code == 413
    long_query = logged_in.client.get("/photos?label=" + "a" * (MAX_QUERY + 1))
    _clean(long_query)
    assert long_query.status_code == 414
    garbage = logged_in.client.post(
        "/control/pause",
        content=b"--x\r\nnot a part",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    _clean(garbage)
    wrong_method = logged_in.client.get("/control/pause")
    _clean(wrong_method)
    assert wrong_method.status_code == 405
    assert not (logged_in.root / "state" / "paused").exists()
