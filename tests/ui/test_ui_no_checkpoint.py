"""Without any generator checkpoint the app still starts, says how to get one, and everything that
does not need the generator works: faces, their masks, the identity comparison."""

from __future__ import annotations

import pytest

from idface.engine import Engine
from idface.ui.handlers import Handlers
from idface.ui.maskcodec import decode_label_map


@pytest.fixture(scope="module")
def handlers():
    return Handlers(Engine(load_generator=False))


def test_app_builds_and_explains_how_to_get_a_checkpoint(handlers):
    import app

    demo = app.build_demo(handlers.engine)
    assert demo is not None
    assert not handlers.engine.generator_ready
    assert "checkpoint" in handlers.engine.generator_help and "python -m idface train" in handlers.engine.generator_help


def test_faces_masks_and_identity_comparison_work_without_generator(handlers, faces_dir):
    style, msg, crop = handlers.prepare_face(str(faces_dir / "obama.jpg"), "style face")
    identity, _, _ = handlers.prepare_face(str(faces_dir / "obama2.jpg"), "identity face")
    assert style is not None and crop.shape == (256, 256, 3)
    update = handlers.mask_from_face(style, "style face")
    lm = decode_label_map(update["value"])
    assert lm.shape == (256, 256) and {1, 13}.issubset(set(lm.flatten().tolist()))  # skin and hair
    out = handlers.regenerate(update["value"], style, identity, "identity", [], "identity")
    generated, mask_pic, _, bars, download, status, _ = out
    assert generated is None and download is None
    assert status == handlers.engine.generator_help
    assert mask_pic.shape == (256, 256, 3)
    assert "same person" in bars  # the reference comparison of the two uploaded faces
    for name in handlers.engine.recognizers():
        assert name in bars


def test_no_face_is_a_message_not_a_crash(handlers, tmp_path):
    import numpy as np
    from PIL import Image

    flat = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(flat)
    state, msg, crop = handlers.prepare_face(str(flat), "style face")
    assert state is None and crop is None
    assert msg.startswith("**Problem:**") and "face" in msg


def test_several_faces_message_says_which_one_was_used(handlers, faces_dir):
    import numpy as np
    from PIL import Image

    left = Image.open(faces_dir / "obama.jpg").convert("RGB").resize((300, 400))
    right = Image.open(faces_dir / "biden.jpg").convert("RGB").resize((300, 400))
    both = Image.new("RGB", (600, 400))
    both.paste(left, (0, 0))
    both.paste(right, (300, 0))
    face, msg, _ = handlers.prepare_face(np.asarray(both), "style face")
    assert face is not None and face.faces_found == 2
    assert "2 faces" in msg and "that is the face" in msg and ("left" in msg or "right" in msg)


def test_where_in_photo_words():
    from idface.engine import where_in_photo

    assert where_in_photo([0, 0, 10, 10], (100, 100)) == "at the top left"
    assert where_in_photo([45, 45, 55, 55], (100, 100)) == "in the middle"
    assert where_in_photo([80, 40, 95, 60], (100, 100)) == "on the right"
    assert where_in_photo([40, 80, 60, 95], (100, 100)) == "at the bottom"


def test_app_starts_with_a_broken_checkpoint_setting_and_says_why(monkeypatch, tmp_path):
    import app

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("IDFACE_CHECKPOINT", str(tmp_path))  # a folder without model.safetensors
    engine = Engine(strict=False)
    assert not engine.generator_ready
    assert "could not be loaded" in engine.generator_help and "model.safetensors" in engine.generator_help
    assert app.build_demo(engine) is not None
    with pytest.raises(Exception, match="model.safetensors"):
        Engine()  # the CLI's strict engine refuses


def test_api_generate_without_generator_is_a_readable_error(handlers, faces_dir):
    import gradio as gr

    masks = faces_dir.parent / "masks"
    with pytest.raises(gr.Error, match="No generator checkpoint was found"):
        handlers.api_generate(str(masks / "drawn_face.png"), str(faces_dir / "obama.jpg"), str(faces_dir / "biden.jpg"))
