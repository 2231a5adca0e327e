"""Faults: the Hub unreachable at start, a recognizer's weights missing or broken, the disk cache
not writable, the generator raising mid-request. The app starts (or keeps serving) with the
affected feature marked unavailable and says why, in one line, never a stack trace."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client, handle_file

from idface.errors import UnavailableError

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT / "assets" / "faces"
MASK = ROOT / "assets" / "masks" / "drawn_face.png"


def unwritable_dir(tmp_path: Path) -> Path:
    """A cache path that cannot be created or written (its parent is a regular file). Tests run as
    root here, where a chmod'ed read-only folder would still be writable."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder's parent should be")
    return blocker / "cache"


# ---- library level ----

def test_dlib_recognizer_runs_with_an_unwritable_cache(tmp_path, monkeypatch):
    from idface.identity.dlib_resnet import load_dlib_resnet

    cache = unwritable_dir(tmp_path)
    monkeypatch.setenv("IDFACE_CACHE_DIR", str(cache))
    model = load_dlib_resnet()  # converts from the .dat, cannot cache, still works
    with torch.no_grad():
        out = model(torch.rand(1, 3, 150, 150))
    assert out.shape == (1, 128) and torch.isfinite(out).all()
    assert not cache.exists() and not list(tmp_path.glob("**/*.tmp"))


@pytest.fixture
def broken_arcface(tmp_path, monkeypatch):
    """ArcFace weights present but broken (first in the local search path); registry reset."""
    pytest.importorskip("facexlib")
    from idface.identity import registry
    from idface.identity.arcface import WEIGHTS_FILE

    folder = tmp_path / "facexlib_weights"
    folder.mkdir()
    (folder / WEIGHTS_FILE).write_bytes(b"PK\x03\x04 this is no state dict")
    monkeypatch.setenv("IDFACE_WEIGHTS_DIR", str(folder))
    registry.clear_cache()
    yield folder / WEIGHTS_FILE
    registry.clear_cache()


def test_engine_marks_a_broken_recognizer_unavailable_and_keeps_the_others(broken_arcface):
    from idface.ui.bars import identity_bars_html
    from idface.engine import Engine

    engine = Engine(load_generator=False)
    assert "dlib-resnet" in engine.recognizers()
    assert "arcface" not in engine.recognizers()
    reason = engine.unavailable_recognizers()["arcface"]
    assert str(broken_arcface) in reason and "fetch" in reason
    face = engine.prepare(str(FACES / "obama.jpg"), "style face")
    scores = engine.score_faces(face, face)
    assert "dlib-resnet" in scores["recognizers"] and "arcface" not in scores["recognizers"]
    assert "arcface" in scores["unavailable"]
    assert "arcface" in identity_bars_html(scores).lower()


def test_missing_recognizer_weights_say_where_they_were_looked_for(monkeypatch, tmp_path):
    """No ArcFace file anywhere (offline): the registry says which places were tried."""
    pytest.importorskip("facexlib")
    from idface import weights
    from idface.identity import registry

    monkeypatch.setattr(weights, "facexlib_weight_path", lambda name: None)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))  # read per call
    registry.clear_cache()
    try:
        reason = registry.recognizer_status()["arcface"]
        assert reason != "available" and "not found" in reason and "tried" in reason
        with pytest.raises(UnavailableError, match="arcface unavailable"):
            registry.get_recognizer("arcface")
    finally:
        registry.clear_cache()


# ---- the generator raising mid-request, on the running app ----

class Boom(RuntimeError):
    pass


def test_generator_raising_mid_request_keeps_the_app_serving(robust_app, robust_engine, monkeypatch):
    from idface.testing.browser import BrowserSession

    from idface.images import load_mask
    from idface.ui.maskcodec import encode_label_map

    url, _ = robust_app
    pipe = robust_engine.pipeline
    calls = {"n": 0}
    original = type(pipe).__call__

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        raise Boom("CUDA error: an illegal memory access was encountered (simulated)")

    monkeypatch.setattr(type(pipe), "__call__", flaky)
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as info:
        client.predict(mask_file=handle_file(str(MASK)), style_file=handle_file(str(FACES / "obama.jpg")),
                       identity_file=handle_file(str(FACES / "biden.jpg")), api_name="/generate")
    message = str(info.value)
    assert "generation failed on the server" in message and "Traceback" not in message and "CUDA" not in message

    s = BrowserSession(url)
    try:
        ok, out, _ = s.run(s.fn_index("style_in", "change"), [s.upload(FACES / "obama.jpg")])
        assert ok and out[2] is not None  # face preparation does not need the generator
        regenerate = s.fn_index("mask_editor", "input")
        mask_text = encode_label_map(load_mask(MASK, size=256))
        ok, out, _ = s.run(regenerate, [mask_text, None, None, "none", [], "identity"])
        assert ok and out[0] is None and "generation failed on the server" in out[5]
        assert "dlib" in str(out[3]).lower()  # the identity bars still show the faces' scores
        assert calls["n"] == 2

        monkeypatch.setattr(type(pipe), "__call__", original)  # the fault clears: served again
        ok, out, _ = s.run(regenerate, [mask_text, None, None, "none", [], "identity"])
        assert ok and out[0] is not None, out[5]
        path, scores = client.predict(mask_file=handle_file(str(MASK)), style_file=handle_file(str(FACES / "obama.jpg")),
                                      identity_file=handle_file(str(FACES / "biden.jpg")), api_name="/generate")
        assert Path(path).is_file() and scores["recognizers"]
    finally:
        s.close()
        client.close()


# ---- the real start path: app.py with the Hub unreachable, a broken recognizer, no cache ----

@pytest.mark.slow
def test_app_starts_with_hub_unreachable_broken_arcface_and_unwritable_cache(tmp_path):
    from idface.testing import app_process
    from idface.testing.browser import BrowserSession

    pytest.importorskip("facexlib")
    from idface.identity.arcface import WEIGHTS_FILE

    weights = tmp_path / "facexlib_weights"
    weights.mkdir()
    (weights / WEIGHTS_FILE).write_bytes(b"\x80\x04truncated")
    env = dict(os.environ, IDFACE_CHECKPOINT="some-org/idface-demo", HF_HUB_OFFLINE="1",
               HF_HUB_CACHE=str(tmp_path / "empty_hf_cache"), IDFACE_CACHE_DIR=str(unwritable_dir(tmp_path)),
               IDFACE_WEIGHTS_DIR=str(weights), GRADIO_ANALYTICS_ENABLED="False")
    with app_process(env, cwd=ROOT, timeout_s=180) as (url, _):
        config = httpx.get(url + "config", timeout=10).json()
        checkpoint = next(c["props"]["value"] for c in config["components"]
                          if c.get("props", {}).get("elem_id") == "checkpoint")
        # the page says the generator is unavailable and why: the named repo, offline, how to fix
        assert "could not be loaded" in checkpoint and "some-org/idface-demo" in checkpoint
        assert "HF_HUB_OFFLINE" in checkpoint

        client = Client(url, verbose=False)
        with pytest.raises(Exception) as info:
            client.predict(mask_file=handle_file(str(MASK)), style_file=handle_file(str(FACES / "obama.jpg")),
                           identity_file=handle_file(str(FACES / "biden.jpg")), api_name="/generate")
        assert "could not be loaded" in str(info.value) and "Traceback" not in str(info.value)
        client.close()

        # faces still work (dlib converted without a cache); the bars say why ArcFace is missing
        s = BrowserSession(url)
        ok, out, _ = s.run(s.fn_index("style_in", "change"), [s.upload(FACES / "obama.jpg")])
        assert ok and out[2] is not None, out
        ok, out, _ = s.run(s.fn_index("identity_in", "change"), [s.upload(FACES / "biden.jpg")])
        assert ok and out[2] is not None, out
        ok, out, _ = s.run(s.fn_index("mask_editor", "input"), [None, None, None, "none", [], "identity"])
        s.close()
        bars = str(out[3])
        assert ok and "dlib" in bars.lower() and "arcface" in bars.lower() and "fetch" in bars

