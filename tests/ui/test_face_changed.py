"""A new face up to its first generated face in one handler step (Handlers.face_changed: prepared
without recognizer embeddings, generated unscored), then the scores in the next
(Handlers.finish_generation); the repeated change event of one upload changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from idface.ui.handlers import SCORING_NOTE, Handlers
from idface.ui.maskcodec import decode_label_map


@pytest.fixture(scope="module")
def handlers(plumbing_engine):
    return Handlers(plumbing_engine)


def visitor_photo(faces_dir: Path, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"visitor_{name}"  # new bytes (not a bundled example's), same picture
    path.write_bytes((faces_dir / name).read_bytes() + b"\0")
    return str(path)


def test_the_upload_step_generates_unscored_and_the_next_step_scores(handlers, plumbing_engine, faces_dir, tmp_path):
    identity, _, _ = handlers.prepare_face(str(faces_dir / "biden.jpg"), "identity face")
    photo = visitor_photo(faces_dir, tmp_path, "obama2.jpg")
    out = handlers.face_changed("style face", photo, None, identity, None, "identity", [], follow=True,
                                session="session-a")
    face, message, crop, editor, example, picture, bars, status, gen = out
    assert face is not None and crop is face.aligned and "Problem" not in status
    assert face.embeddings == {}  # the identity token came from the identity face: nothing embedded yet
    np.testing.assert_array_equal(decode_label_map(editor["value"]), face.label_map)  # its mask, to the editor
    assert example == {"__type__": "update", "value": None}
    assert gen is not None and gen.scores is None and SCORING_NOTE in bars
    assert picture is not None and picture.shape[:2] == (256, 256)  # shown at the faces' size

    mask_pic, attention, bars, download, scored = handlers.finish_generation(editor["value"], gen, face, identity,
                                                                             "identity")
    assert scored is gen and gen.scores is not None
    assert set(face.embeddings) == set(plumbing_engine.recognizers())
    assert SCORING_NOTE not in bars and "Generated face:" in bars
    assert mask_pic is not None and Path(download).is_file()
    assert attention["value"] is not None

    # the repeated change event (same session, file and role; the state holds the face): all skipped
    again = handlers.face_changed("style face", photo, face, identity, editor["value"], "identity", [], follow=True,
                                  session="session-a")
    assert all(part == {"__type__": "update"} for part in again)
    assert all(part == {"__type__": "update"} for part in handlers.finish_generation(editor["value"], gen, face,
                                                                                      identity, "identity"))


def test_a_style_token_embeds_only_its_recognizer_before_the_picture(handlers, plumbing_engine, faces_dir, tmp_path):
    photo = visitor_photo(faces_dir, tmp_path, "obama3.jpg")
    face, *_, gen = handlers.face_changed("style face", photo, None, None, None, "style", [], follow=True,
                                          session="session-b")
    assert gen is not None and gen.scores is None
    assert set(face.embeddings) == {plumbing_engine.pipeline.config.identity_recognizer}


def test_an_identity_face_that_fails_says_so_and_the_next_step_shows_the_reference(handlers, faces_dir, tmp_path):
    style, _, _ = handlers.prepare_face(str(faces_dir / "obama.jpg"), "style face")
    bad = tmp_path / "not_a_photo.jpg"
    bad.write_bytes(b"not an image")
    identity, message, crop, editor, example, picture, bars, status, gen = handlers.face_changed(
        "identity face", str(bad), None, style, None, "none", [], session="session-c")
    assert identity is None and crop is None and message.startswith("**Problem:**") and "\n" not in message
    assert editor == {"__type__": "update"}  # an identity face never changes the mask
    assert gen is None and picture is None and status  # no mask in the editor: says what to do
    mask_pic, attention, bars, download, scored = handlers.finish_generation(None, None, style, None, "identity")
    assert scored is None and download is None and "idbar-card" in bars
