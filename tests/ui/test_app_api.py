"""The /generate API from gradio_client with plain image files, on the app launched on loopback
(plumbing checkpoint: random tiny weights, so the images are not faces yet, but every step runs)."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from idface.outputs import read_png_metadata

MASKS = __import__("pathlib").Path(__file__).resolve().parents[2] / "assets" / "masks"


@pytest.fixture(scope="module")
def client(launched_app):
    url, _ = launched_app
    return Client(url, verbose=False, download_files=True)


def _generate(client, mask, style, identity, **kw):
    return client.predict(
        mask_file=handle_file(str(mask)), style_file=handle_file(str(style)),
        identity_file=handle_file(str(identity)), api_name="/generate", **kw,
    )


def _check_scores(scores, engine):
    names = set(engine.recognizers())
    assert names, "no recognizer available: the identity bars would be empty"
    assert set(scores["recognizers"]) == names
    for name, e in scores["recognizers"].items():
        kind = "similarity" if e["higher_is_more_similar"] else "distance"
        assert f"{'distance' if kind == 'similarity' else 'similarity'}_to_style" not in e  # keys say what they hold
        for key in (f"{kind}_to_style", f"{kind}_to_identity", "style_vs_identity", "threshold"):
            assert np.isfinite(e[key]), (name, key)
        assert e["verdict"] in ("recognized as the identity face", "recognized as the style face",
                                "matches both faces", "matches neither face")
    assert set(scores["unavailable"]) == set(engine.unavailable_recognizers())


@pytest.mark.parametrize("mask_name", ["drawn_face.png", "drawn_face_color.png"])
def test_generate_api_real_photos_plumbing_checkpoint(client, plumbing_engine, faces_dir, mask_name):
    path, scores = _generate(client, MASKS / mask_name, faces_dir / "obama.jpg", faces_dir / "biden.jpg")
    with Image.open(path) as img:
        assert img.size == (plumbing_engine.image_size,) * 2
    meta = read_png_metadata(path)
    assert meta["idface:synthetic"] == "true"
    assert meta["idface:checkpoint"] == plumbing_engine.checkpoint_label
    _check_scores(scores, plumbing_engine)
    # same person (obama / obama2) must read as the same person in the reference for dlib
    assert scores["settings"]["identity_token"] == "identity"


def test_generate_api_controls_plumbing_checkpoint(client, plumbing_engine, faces_dir):
    path, scores = _generate(client, MASKS / "drawn_face.png", faces_dir / "obama.jpg", faces_dir / "obama2.jpg",
                             identity_source="none", from_identity="hair,skin")
    assert scores["settings"]["identity_token"] == "none"
    assert scores["settings"]["classes_from_identity_face"] == ["skin", "hair"]
    for name, e in scores["recognizers"].items():
        assert e["style_same_as_identity"] is True, f"{name} does not see obama/obama2 as one person"


@pytest.mark.parametrize(
    "bad, words",
    [
        ("text", "not an image"),
        ("noface", "face"),
        ("mask_garbage", "mask"),
        ("class", "unknown class"),
    ],
)
def test_bad_inputs_give_readable_error_and_server_keeps_serving_plumbing_checkpoint(
        client, plumbing_engine, faces_dir, tmp_path, bad, words):
    style, identity, mask, kw = faces_dir / "obama.jpg", faces_dir / "biden.jpg", MASKS / "drawn_face.png", {}
    if bad == "text":
        style = tmp_path / "notes.png"
        style.write_text("not a picture")
    elif bad == "noface":
        style = tmp_path / "flat.png"
        Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(style)
    elif bad == "mask_garbage":
        mask = faces_dir / "grace_hopper.jpg"  # a photo is not a mask
    elif bad == "class":
        kw = {"from_identity": "hair,tentacles"}
    with pytest.raises(Exception) as info:
        _generate(client, mask, style, identity, **kw)
    message = str(info.value)
    assert words in message.lower(), message
    assert "Traceback" not in message
    path, scores = _generate(client, MASKS / "drawn_face.png", faces_dir / "obama.jpg", faces_dir / "biden.jpg")
    assert Image.open(path).size == (plumbing_engine.image_size,) * 2
