"""The app's Conceal panel: builds inside a Blocks, runs a real photo-mode attack through its
handler, shows raw and re-compressed bars with the plain-language explanation, offers a
synthetic-marked PNG, and answers bad requests with one line."""

from __future__ import annotations

import numpy as np
import pytest

from idface.images import load_image
from idface.ui.conceal_panel import EXPLANATION, ConcealHandlers, conceal_bars_html, conceal_tab
from idface.outputs import read_png_metadata


def test_panel_builds_inside_blocks():
    import gradio as gr

    with gr.Blocks() as demo:
        with gr.Tab("Conceal"):
            conceal_tab(None)
    assert any(getattr(fn, "api_name", None) == "conceal" for fn in demo.fns.values())
    assert "re-compress" in EXPLANATION and "same person" in EXPLANATION


def test_empty_and_bad_requests_answer_in_one_line(faces_dir):
    h = ConcealHandlers(None)
    out = h.run(None, None, "impersonate", "photo", ["face"], None)
    assert out[1] is None and "photo" in out[-1]
    a = load_image(faces_dir / "astronaut.png")
    out = h.run(a, None, "impersonate", "photo", ["face"], None)
    assert "target" in out[-1]
    out = h.run(a, load_image(faces_dir / "biden.jpg"), "impersonate", "swap", ["face"], None)
    assert "generator" in out[-1] and len(out[-1].splitlines()) == 1
    out = h.run(np.full((120, 120, 3), 90, np.uint8), None, "dodge", "photo", ["face"], None)
    assert "no face" in out[-1]


@pytest.mark.slow
def test_photo_attack_through_the_panel(faces_dir):
    a, b = load_image(faces_dir / "astronaut.png"), load_image(faces_dir / "grace_hopper.jpg")
    steps = []
    original, result, bars, summary, report, path, status = ConcealHandlers(None).run(
        a, b, "impersonate", "photo", ["face"], ["dlib-resnet"], 30, progress=lambda p, desc=None: steps.append(p))
    assert status == ""
    assert np.array_equal(original, a) and result.shape == a.shape and not np.array_equal(result, a)
    assert report["success"] and "worked" in summary
    assert "dlib-resnet" in bars and "As produced" in bars and "After re-compression" in bars
    assert bars.count("idbar-row") >= 4  # vs A and vs B, raw and re-compressed
    assert steps and steps[-1][0] == report["steps"]
    meta = read_png_metadata(path)
    assert meta["idface:synthetic"] == "true"
    assert np.array_equal(load_image(path), result)


def test_bars_show_errors_and_unavailable_recognizers():
    rep = {"goal": "dodge", "recognizers": {"dlib-resnet": {
        "attacked": True, "higher_is_more_similar": False, "threshold": 0.6,
        "distance_to_source": 0.7, "distance_to_target": None, "success": True,
        "recompressed": {"error": "no face found", "success": False}, "unattacked": {}}},
        "unavailable": {"arcface": "weights missing"}}
    out = conceal_bars_html(rep)
    assert "no face found" in out and "arcface" in out and "weights missing" in out
