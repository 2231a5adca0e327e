"""Downloaded PNGs say they are synthetic and what made them, and carry no photo."""

import json

import numpy as np
from PIL import Image

from idface.engine import verdict
from idface.outputs import IPTC_SYNTHETIC, attention_overlay, read_png_metadata, save_synthetic_png
from idface.ui.bars import identity_bars_html


def test_png_metadata_marks_synthetic_with_checkpoint_and_settings(tmp_path, rng):
    img = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    path = save_synthetic_png(img, tmp_path / "out.png", "someone/idface@abc123", {"identity_token": "style"})
    meta = read_png_metadata(path)
    assert meta["idface:synthetic"] == "true"
    assert "not a photograph" in meta["Description"]
    assert meta["idface:checkpoint"] == "someone/idface@abc123"
    assert json.loads(meta["idface:settings"]) == {"identity_token": "style"}
    assert IPTC_SYNTHETIC in meta["XML:com.adobe.xmp"]
    with Image.open(path) as back:
        np.testing.assert_array_equal(np.asarray(back.convert("RGB")), img)  # lossless, and only the output
    assert len(path.read_bytes()) < img.nbytes * 2 + 4000


def test_attention_overlay_highlights_where_attention_is():
    img = np.full((128, 128, 3), 100, np.uint8)
    heat = np.zeros((16, 16), np.float32)
    heat[:8, :8] = 1.0
    out = attention_overlay(img, heat)
    assert out.shape == img.shape and out.dtype == np.uint8
    hot, cold = out[:48, :48].astype(int), out[-48:, -48:].astype(int)
    assert hot[..., 0].mean() > cold[..., 0].mean() + 100  # red-to-white where the token is attended
    assert np.abs(cold - 50).max() <= 1  # elsewhere the dimmed grey picture


def _entry(**kw):
    base = {"threshold": 0.6, "higher_is_more_similar": False, "threshold_source": "dlib"}
    base.update(kw)
    return base


def test_verdict_words():
    assert verdict(_entry(same_as_style=False, same_as_identity=True)) == "recognized as the identity face"
    assert verdict(_entry(same_as_style=True, same_as_identity=False)) == "recognized as the style face"
    assert verdict(_entry(same_as_style=False, same_as_identity=False)) == "matches neither face"
    assert verdict(_entry(same_as_style=True, same_as_identity=True)) == "matches both faces"


def test_bars_show_every_recognizer_threshold_and_unavailable_ones():
    scores = {
        "recognizers": {
            "dlib-resnet": _entry(distance_to_style=0.8, distance_to_identity=0.4, same_as_style=False,
                                  same_as_identity=True, style_vs_identity=0.84, style_same_as_identity=False),
            "cosine-model": {"threshold": 0.3, "higher_is_more_similar": True, "style_vs_identity": 0.1,
                             "style_same_as_identity": False},
        },
        "unavailable": {"arcface": "weights not found in weights/arcface"},
    }
    page = identity_bars_html(scores)
    assert page.count('class="idbar-card"') == 2
    assert "recognized as the identity face" in page
    assert "same person below 0.6" in page and "same person above 0.3" in page
    assert "different people" in page
    assert "arcface: not available here (weights not found in weights/arcface)" in page
    # distance axis reversed: 0.4 (closer) draws a longer bar than 0.8
    assert "width:66.7%" in page and "width:33.3%" in page


def test_old_downloads_are_pruned(tmp_path, rng):
    import os
    import time

    from idface.outputs import OUTPUT_MAX_AGE_S, synthetic_png_file

    img = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    old = synthetic_png_file(img, "ckpt", {}, directory=str(tmp_path))
    past = time.time() - OUTPUT_MAX_AGE_S - 10
    os.utime(old, (past, past))
    new = synthetic_png_file(img, "ckpt", {}, directory=str(tmp_path))
    assert not os.path.exists(old) and os.path.exists(new)
