"""Inbox classification: each answer carries the model version that really gave it."""

from __future__ import annotations

import json
import threading
import weakref

import numpy as np
import pytest
from mlupdated.coreml.spec import save_spec
from mlupdated.engine.predictor import Predictor
from mlupdated.logs import get_logger
from mlupdated.service.intake.inbox import InboxClassifier
from mlupdated.service.queue import Queue
from mlupdated.service.store import ModelStore
from mlupdated.service.workspace import init_workspace
from PIL import Image

from tests.helpers.updatable_specs import build_updatable_spec


@pytest.fixture
def parts(tmp_path):
    first, second = tmp_path / "v1.mlmodel", tmp_path / "v2.mlmodel"
    save_spec(build_updatable_spec(weight_seed=1), first)
    save_spec(build_updatable_spec(weight_seed=2), second)
    ws = init_workspace(tmp_path / "ws", model_path=first)
    queue = Queue(ws.db_path)
    store = ModelStore(ws)
    inbox = InboxClassifier(workspace=ws, queue=queue, store=store, log=get_logger("test"))
    yield ws, queue, store, inbox, first, second
    queue.close()


def _photo(ws, name: str, seed: int):
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    path = ws.inbox / name
    Image.fromarray(pixels).save(path)
    return path


def _store(store, model) -> int:
    """Add ``model`` as a new, not yet promoted version; return its number."""
    return store.add_version(
        model.read_bytes(),
        parent=1,
        reason="update",
        corrections=[],
        loss=None,
        metrics={},
        gate=None,
    )


def _probabilities(model, photo) -> dict[str, float]:
    (result,) = Predictor.from_path(model, cache=False).predict_paths([photo])
    return {str(k): float(v) for k, v in result.probabilities.items()}


def test_answer_comes_from_the_version_the_manifest_names(parts) -> None:
    ws, queue, store, inbox, first, second = parts
    photo = _photo(ws, "a.png", 1)
    expected = _probabilities(first, photo)
    assert expected != pytest.approx(_probabilities(second, photo))
    # Mid-swap: version 2 is stored and current.mlmodel already holds it, but the
    # manifest still names version 1 (promote writes the file, then the manifest).
    _store(store, second)
    ws.current_model.write_bytes(second.read_bytes())
    record = inbox.classify(photo, "a" * 64)
    assert record is not None
    assert record["version"] == 1
    assert record["probabilities"] == pytest.approx(expected)


def test_content_is_classified_once_and_written_down(parts) -> None:
    ws, queue, store, inbox, first, second = parts
    photo = _photo(ws, "b.png", 2)
    assert inbox.classify(photo, "b" * 64)["version"] == 1
    store.promote(_store(store, second))
    # The same content again after a swap: the earlier answer stands.
    assert inbox.classify(photo, "b" * 64) is None
    lines = [json.loads(line) for line in ws.predictions_log.read_text().splitlines()]
    assert [(e["path"], e["version"]) for e in lines] == [("inbox/b.png", 1)]
    assert queue.prediction_for("b" * 64) is not None


def _config(**intake):
    from mlupdated.service.config import config_from_dict

    return config_from_dict({"intake": intake})


def test_inbox_decodes_with_the_intake_settings(parts) -> None:
    ws, queue, store, _, first, _ = parts
    # A wide photo: red at the sides, blue in the middle, so a centre crop sees
    # something else than the whole photo squeezed.
    pixels = np.zeros((8, 32, 3), dtype=np.uint8)
    pixels[..., 0] = 220
    pixels[:, 12:20] = (10, 10, 230)
    wide = ws.inbox / "wide.png"
    Image.fromarray(pixels).save(wide)
    config = _config(resize="centerCrop")
    inbox = InboxClassifier(
        workspace=ws, queue=queue, store=store, log=get_logger("test"), config=lambda: config
    )
    record = inbox.classify(wide, "sha-wide")
    (crop,) = Predictor.from_path(first, cache=False).predict_paths([wide], resize="centerCrop")
    (fill,) = Predictor.from_path(first, cache=False).predict_paths([wide], resize="scaleFill")
    expected = {str(k): float(v) for k, v in crop.probabilities.items()}
    squeezed = {str(k): float(v) for k, v in fill.probabilities.items()}
    assert record["probabilities"] == pytest.approx(expected)
    assert record["probabilities"] != pytest.approx(squeezed)
    # The pixel limit is intake's too: 8×32 is over a limit of 200 pixels.
    small = _config(max_pixels=200)
    strict = InboxClassifier(
        workspace=ws, queue=queue, store=store, log=get_logger("test"), config=lambda: small
    )
    assert strict.classify(wide, "sha-wide-2") is None
    (error,) = queue.recent_errors(1)
    assert "pixels" in str(error)


def test_release_drops_the_session_and_the_next_photo_reloads_it(parts) -> None:
    ws, queue, store, inbox, first, _second = parts
    photo = _photo(ws, "a.png", 1)
    inbox.classify(photo, "sha-a")
    assert inbox.loaded
    # Nothing but the inbox holds the predictor: once released, it and its onnxruntime
    # sessions (weights, arena) are gone, not kept alive by a stray reference.
    sessions = [weakref.ref(stage.session) for stage in inbox._predictor._stages]
    assert sessions
    assert inbox.release()
    assert not inbox.loaded
    assert [ref() for ref in sessions] == [None] * len(sessions)
    assert not inbox.release()  # nothing left to release
    record = inbox.classify(_photo(ws, "b.png", 2), "sha-b")
    assert record is not None and record["version"] == 1
    assert record["probabilities"] == pytest.approx(_probabilities(first, ws.inbox / "b.png"))


def test_idle_inbox_releases_its_model_by_itself(parts) -> None:
    ws, queue, store, _inbox, _first, _second = parts
    inbox = InboxClassifier(
        workspace=ws, queue=queue, store=store, log=get_logger("test"), idle_release_seconds=0.1
    )
    released = threading.Event()
    original = inbox.release

    def release() -> bool:
        done = original()
        if done:
            released.set()
        return done

    inbox.release = release
    inbox.start()
    try:
        inbox.submit(_photo(ws, "a.png", 1), "sha-a")
        assert released.wait(60), "the idle inbox kept its model"
        assert queue.prediction_for("sha-a") is not None
        assert not inbox.loaded
    finally:
        inbox.stop()
