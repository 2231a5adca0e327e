"""The app end to end on the bundled demo checkpoint (weights/idface-demo, loaded by the resolver
with nothing configured): /generate from gradio_client on a training photo reconstructs a face
that dlib-ResNet verifies as that person, and the page says the checkpoint is a small demo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from idface.testing import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_app(monkeypatch_module):
    import app
    from idface.engine import Engine

    monkeypatch_module.delenv("IDFACE_CHECKPOINT", raising=False)
    engine = Engine()
    assert engine.generator_ready, engine.generator_error
    demo = app.build_demo(engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **app.LAUNCH_KWARGS)
    yield url, engine
    demo.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_bundled_checkpoint_is_named_as_a_small_demo(demo_app):
    _, engine = demo_app
    assert engine.checkpoint_label.startswith(f"bundled weights weights{os.sep}idface-demo")
    assert "does not generalise" in engine.checkpoint_label


def test_generate_api_reconstructs_a_training_photo_as_the_same_person(demo_app):
    url, engine = demo_app
    client = Client(url, verbose=False, download_files=True)
    path, scores = client.predict(
        mask_file=handle_file(str(ROOT / "assets" / "train" / "obama_mask.png")),
        style_file=handle_file(str(ROOT / "assets" / "faces" / "obama.jpg")),
        identity_file=handle_file(str(ROOT / "assets" / "faces" / "obama.jpg")),
        api_name="/generate",
    )
    with Image.open(path) as img:
        assert img.size == (engine.image_size,) * 2
    dlib = scores["recognizers"]["dlib-resnet"]
    assert dlib["same_as_style"] is True, dlib
    assert dlib["distance_to_style"] < dlib["threshold"]
    assert dlib["verdict"] == "matches both faces"


def test_first_screen_pair_is_read_as_the_identity_face(demo_app):
    """The pair the page loads first (app.FIRST_STYLE_FACE / FIRST_IDENTITY_FACE): the style
    face's mask and look with the identity face's token; dlib-ResNet's bar reads the identity face."""
    import app

    url, _ = demo_app
    client = Client(url, verbose=False, download_files=True)
    style = Path(app.FIRST_STYLE_FACE).stem
    _, scores = client.predict(
        mask_file=handle_file(str(ROOT / "assets" / "train" / f"{style}_mask.png")),
        style_file=handle_file(str(ROOT / "assets" / "faces" / app.FIRST_STYLE_FACE)),
        identity_file=handle_file(str(ROOT / "assets" / "faces" / app.FIRST_IDENTITY_FACE)),
        api_name="/generate",
    )
    dlib = scores["recognizers"]["dlib-resnet"]
    assert dlib["verdict"] == "recognized as the identity face", dlib
