"""Every page of ``mlupdated web`` and every action, through Starlette's TestClient on a
workspace made by the daemon tests' fixtures."""

from __future__ import annotations

import io
import os
from pathlib import Path

from mlupdated.service.queue import Queue
from mlupdated.service.store import ModelStore
from mlupdated.web.files import correction_name
from mlupdated.web.security import CSP, token_path
from PIL import Image

from tests.daemon.conftest import sha256_of


def test_every_page_renders_with_the_strict_headers(logged_in) -> None:
    photo_id, path, _ = logged_in.classified("cat.png", label="Cat", p=0.93)
    photos = logged_in.client.get("/photos")
    assert photos.status_code == 200
    assert photos.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert photos.headers["x-frame-options"] == "DENY"
    assert f'id="p{photo_id}"' in photos.text
    assert 'data-label="Cat"' in photos.text and "93%" in photos.text and "v1" in photos.text
    assert "<script>" not in photos.text and "style=" not in photos.text
    for page, needle in (
        ("/corrections", "min_batch"),
        ("/models", "Roll back"),
    ):
        done = logged_in.client.get(page)
        assert done.status_code == 200, page
        assert needle in done.text
        assert "model version 1" in done.text
    svg = logged_in.client.get("/models/plot.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg") and "gate accuracy" in svg.text
    state = logged_in.client.get("/api/state").json()
    assert state["version"] == 1 and len(state["stamp"]) == 16
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        done = logged_in.client.get(f"/static/{name}")
        assert done.status_code == 200 and done.headers["content-type"].startswith(kind)
    thumb = logged_in.client.get(f"/photos/{photo_id}/thumb")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).format == "JPEG"


def test_the_live_stamp_changes_when_the_daemon_classifies(logged_in) -> None:
    before = logged_in.client.get("/api/state").json()["stamp"]
    logged_in.classified("new.png")
    assert logged_in.client.get("/api/state").json()["stamp"] != before


def test_filters_label_low_confidence_and_not_yet_reviewed(logged_in) -> None:
    sure, _, _ = logged_in.classified("sure.png", seed=1, label="Cat", p=0.97)
    unsure, _, _ = logged_in.classified("unsure.png", seed=2, label="Cat", p=0.55)
    dog, _, _ = logged_in.classified("dog.png", kind="blue", seed=3, label="Dog", p=0.9)
    assert logged_in.post(f"/photos/{sure}/correct", {"label": "Dog"}).status_code == 303

    def shown(query: str) -> set[int]:
        text = logged_in.client.get(f"/photos{query}").text
        return {i for i in (sure, unsure, dog) if f'id="p{i}"' in text}

    assert shown("") == {sure, unsure, dog}
    assert shown("?label=Dog") == {dog}
    assert shown("?low=1") == {unsure}
    # "Reviewed" is what the queue says: once the daemon queued the correction.
    with Queue(logged_in.ws.db_path) as queue:
        copy = next((logged_in.root / "corrections" / "Dog").iterdir())
        queue.upsert_correction(
            path=f"corrections/Dog/{copy.name}",
            sha256=sha256_of(copy),
            label="Dog",
            size=copy.stat().st_size,
            mtime=copy.stat().st_mtime,
        )
    assert shown("?unreviewed=1") == {unsure, dog}
    assert logged_in.client.get("/photos?label=Horse").status_code == 400


def test_a_correction_is_a_content_named_copy_and_the_latest_label_wins(logged_in) -> None:
    photo_id, path, digest = logged_in.classified("holiday.PNG", label="Cat")
    done = logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/photos#p{photo_id}"
    dog = logged_in.root / "corrections" / "Dog" / correction_name(digest, path.name)
    assert dog.name == digest[:16] + ".png"
    assert dog.read_bytes() == path.read_bytes()
    assert path.exists(), "the inbox photo stays where it was"
    assert sorted(p.name for p in dog.parent.iterdir()) == [dog.name], "no temporary left"
    assert "filed as <strong>Dog</strong>" in logged_in.client.get("/photos").text

    done = logged_in.post(f"/photos/{photo_id}/correct", {"label": "Cat"})
    assert done.status_code == 303
    assert not dog.exists()
    assert (logged_in.root / "corrections" / "Cat" / dog.name).read_bytes() == path.read_bytes()
    # Filters are kept across the action.
    done = logged_in.post(
        f"/photos/{photo_id}/correct", {"label": "Cat", "label_filter": "Cat", "low": "1"}
    )
    assert done.headers["location"] == f"/photos?label=Cat&low=1#p{photo_id}"


def _queue_copy(site, label: str, name: str, digest: str) -> int:
    copy = site.root / "corrections" / label / name
    with Queue(site.ws.db_path) as queue:
        change = queue.upsert_correction(
            path=f"corrections/{label}/{name}",
            sha256=digest,
            label=label,
            size=copy.stat().st_size,
            mtime=copy.stat().st_mtime,
        )
    return change.correction.id


def test_undo_works_while_pending_and_is_refused_once_trained(logged_in) -> None:
    photo_id, path, digest = logged_in.classified("a.png")
    name = correction_name(digest, path.name)
    copy = logged_in.root / "corrections" / "Dog" / name
    # Not yet queued by the daemon: undo removes the copy.
    logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    assert logged_in.post(f"/photos/{photo_id}/undo").status_code == 303
    assert not copy.exists()
    # Queued and pending: undo still works.
    logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    cid = _queue_copy(logged_in, "Dog", name, digest)
    page = logged_in.client.get("/photos").text
    assert "Undo" in page and "pending" in page
    assert logged_in.post(f"/photos/{photo_id}/undo").status_code == 303
    assert not copy.exists()
    # Trained: undo is refused and the copy stays.
    logged_in.post(f"/photos/{photo_id}/correct", {"label": "Dog"})
    _queue_copy(logged_in, "Dog", name, digest)
    with Queue(logged_in.ws.db_path) as queue:
        queue.mark_trained([cid], 2)
    refused = logged_in.post(f"/photos/{photo_id}/undo")
    assert refused.status_code == 409
    assert "already trained into version 2" in refused.text
    assert copy.exists()
    # Nothing filed: nothing to undo.
    other_id, _, _ = logged_in.classified("b.png", seed=9)
    refused = logged_in.post(f"/photos/{other_id}/undo")
    assert refused.status_code == 409 and "nothing to undo" in refused.text


def test_corrections_page_lists_pending_trained_and_rejected_with_reasons(logged_in) -> None:
    made = []
    for index, label in enumerate(("Cat", "Dog", "Cat")):
        photo_id, path, digest = logged_in.classified(f"c{index}.png", seed=20 + index)
        logged_in.post(f"/photos/{photo_id}/correct", {"label": label})
        made.append(_queue_copy(logged_in, label, correction_name(digest, path.name), digest))
    with Queue(logged_in.ws.db_path) as queue:
        queue.mark_trained([made[0]], 2)
        queue.mark_rejected([made[1]], "not an image the model can read")
    text = logged_in.client.get("/corrections").text
    assert "trained into version 2" in text
    assert "not an image the model can read" in text
    assert "waiting for the next update" in text
    thumb = logged_in.client.get(f"/corrections/{made[2]}/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_thumbnails_are_upright_and_cached_by_content(logged_in) -> None:
    photo_id, path, digest = logged_in.classified("rotated.jpg")
    image = Image.new("RGB", (80, 40), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to show upright
    image.save(path, format="JPEG", exif=exif)
    digest = sha256_of(path)
    with Queue(logged_in.ws.db_path) as queue:
        with queue.db.transaction() as conn:
            conn.execute("UPDATE predictions SET sha256 = ? WHERE rowid = ?", (digest, photo_id))
    thumb = Image.open(io.BytesIO(logged_in.client.get(f"/photos/{photo_id}/thumb").content))
    assert thumb.size[0] < thumb.size[1], thumb.size
    cached = Path(os.environ["MLUPDATED_CACHE_DIR"]) / "thumbnails" / f"{digest}-360.jpg"
    assert cached.is_file()


def test_pause_resume_without_a_daemon_and_update_now_refused(logged_in) -> None:
    flag = logged_in.root / "state" / "paused"
    assert logged_in.post("/control/pause").status_code == 303
    assert flag.exists()
    assert "updates paused" in logged_in.client.get("/models").text
    assert logged_in.post("/control/resume").status_code == 303
    assert not flag.exists()
    refused = logged_in.post("/control/update-now")
    assert refused.status_code == 409
    assert "no daemon is running" in refused.text


def test_rollback_goes_through_the_store(logged_in) -> None:
    store = ModelStore(logged_in.ws)
    second = store.add_version(
        store.read_version(1),
        parent=1,
        reason="update",
        corrections=[1],
        loss=0.4,
        metrics={},
        gate={
            "passed": True,
            "reason": None,
            "current": None,
            "candidate": {"count": 4, "accuracy": 0.75, "cross_entropy": 0.5},
        },
    )
    store.promote(second)
    page = logged_in.client.get("/models").text
    assert "model version 2" in page and "accuracy 75%" in page
    assert "<circle" in logged_in.client.get("/models/plot.svg").text
    assert logged_in.post("/models/rollback").status_code == 303
    assert store.current_version() == 1
    assert logged_in.post("/models/rollback", {"version": str(second)}).status_code == 303
    assert store.current_version() == second
    refused = logged_in.post("/models/rollback", {"version": "77"})
    assert refused.status_code == 409 and "no model version 77" in refused.text
    refused = logged_in.post("/models/rollback", {"version": "../1"})
    assert refused.status_code == 400
    assert store.current_version() == second


def test_token_file_is_private_and_logs_in(site) -> None:
    path = token_path(site.ws.state)
    assert path.stat().st_mode & 0o777 == 0o600
    form = site.client.get("/login")
    assert form.status_code == 200
    nonce = form.text.split('name="csrf" value="')[1].split('"')[0]
    wrong = site.client.post("/login", data={"csrf": nonce, "token": "nope"})
    assert wrong.status_code == 403 and "Wrong token" in wrong.text
    form = site.client.get("/login")
    nonce = form.text.split('name="csrf" value="')[1].split('"')[0]
    token = path.read_text().strip()
    done = site.client.post("/login", data={"csrf": nonce, "token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/photos"
    assert site.client.get("/photos", follow_redirects=False).status_code == 200


def test_logout_ends_the_session(logged_in) -> None:
    assert logged_in.post("/logout").status_code == 303
    assert logged_in.client.get("/photos", follow_redirects=False).status_code == 303


def test_label_keys_are_first_letters_then_digits() -> None:
    from mlupdated.web.files import with_keys

    keys = {label.name: label.key for label in with_keys(["Cat", "Car", "Dog", "Umbrella"])}
    # "u" is undo; a letter already taken falls back to the first free digit.
    assert keys == {"Cat": "c", "Car": "1", "Dog": "d", "Umbrella": "2"}
