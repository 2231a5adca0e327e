"""The app's Conceal panel: builds inside a Blocks, runs a real photo-mode attack through its
handler, shows raw and re-compressed bars with the plain-language explanation, offers a
synthetic-marked PNG, and answers bad requests with one line."""

from __future__ import annotations

import numpy as np
import pytest

from idface.images import load_image
from idface.ui.conceal_panel import (EXPLANATION, ConcealHandlers, conceal_bars_html, conceal_tab, public_report,
                                     difference_views, public_text, summary_markdown)
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
    # the panel's own budget (invisible first, PSNR 40 dB to start with) on a face large enough for it
    a, b = load_image(faces_dir / "obama2.jpg"), load_image(faces_dir / "biden.jpg")
    steps = []
    original, result, bars, summary, report, path, status = ConcealHandlers(None).run(
        a, b, "impersonate", "photo", ["face"], ["dlib-resnet"], 40, progress=lambda p, desc=None: steps.append(p))
    assert status == ""
    assert np.array_equal(original, a) and result.shape == a.shape and not np.array_equal(result, a)
    assert report["success"] and "worked" in summary
    assert "dlib-resnet" in bars and "As produced" in bars and "After re-compression" in bars
    assert bars.count("idbar-row") >= 4  # vs A and vs B, raw and re-compressed
    assert steps and steps[-1][0] == report["steps"]
    meta = read_png_metadata(path)
    assert meta["idface:altered_photo"] == "true" and meta["idface:synthetic"] == "false"  # the visitor's photo
    assert "Altered photo" in meta["Description"] and "compositeWithTrainedAlgorithmicMedia" in meta["XML:com.adobe.xmp"]
    assert np.array_equal(load_image(path), result)


def test_bars_show_errors_and_unavailable_recognizers():
    rep = {"goal": "dodge", "recognizers": {"dlib-resnet": {
        "attacked": True, "higher_is_more_similar": False, "threshold": 0.6,
        "distance_to_source": 0.7, "distance_to_target": None, "success": True,
        "recompressed": {"error": "no face found", "success": False}, "unattacked": {}}},
        "unavailable": {"arcface": "weights missing"}}
    out = conceal_bars_html(rep)
    assert "no face found" in out and "arcface" in out and "weights missing" in out


def _verdict(d_src, d_tgt, held):
    return {"distance_to_source": d_src, "distance_to_target": d_tgt, "success": all(held.values()),
            "conditions": {k: {"held": v, "margin": 0.1 if v else -0.1} for k, v in held.items()}}


def test_dodge_shows_no_b_rows_and_failures_are_worded_plainly():
    block = _verdict(0.7, 0.4, {"no_longer_reads_source": True})
    rep = {"goal": "dodge", "recognizers": {"dlib-resnet": {
        "attacked": True, "higher_is_more_similar": False, "threshold": 0.6, **block,
        "recompressed": dict(block), "unattacked": {"distance_to_target": 0.4}}}, "unavailable": {}}
    bars = conceal_bars_html(rep)
    assert "vs B" not in bars and bars.count('class="idbar-row"') == 2  # vs A, raw and re-compressed
    failed = {"goal": "impersonate", "attacked": ["dlib-resnet"], "success": False,
              "success_after_recompression": False, "recompression": "JPEG 75 at half size",
              "conditions_held_by_all_attacked": {"raw": {"reads_target": True, "no_longer_reads_source": False}},
              "psnr": 41.0, "ssim_luma": 0.99, "lpips": "unavailable", "steps": 1, "seconds": 3.0}
    text = summary_markdown(failed)
    assert "no longer works" not in text and "did not work" in text and "1 step," in text
    assert "no longer reads A" in text  # the condition that did not hold is named


def test_visitor_messages_hold_no_server_paths():
    reason = ("ArcFace weights recognition_arcface_ir_se50.pth not found; tried local folders /srv/app/weights/"
              "facexlib, /usr/lib/python3.11/site-packages/facexlib/weights; HF cache x (downloads off)")
    assert public_text(reason) == "ArcFace weights recognition_arcface_ir_se50.pth not found"
    assert "/srv" not in public_text("cannot read /srv/app/x.png") and "JPEG 75/half" in public_text("JPEG 75/half")
    rep = {"goal": "dodge", "recognizers": {}, "unavailable": {"arcface": reason}}
    assert "/usr/lib" not in conceal_bars_html(rep)
    assert public_report({"a": [reason]}) == {"a": ["ArcFace weights recognition_arcface_ir_se50.pth not found"]}


def test_the_difference_view_shows_where_and_a_one_to_one_crop():
    a = np.full((300, 400, 3), 100, np.uint8)
    b = a.copy()
    b[200:210, 300:310] += np.array([2, 0, 0], np.uint8)    # a faint change, off centre
    amplified, pair = difference_views(a, b)
    assert amplified.shape == a.shape and (amplified[0, 0] == 128).all() and amplified[205, 305, 0] >= 220
    assert pair.shape == (256, 2 * 256 + 4, 3)
    left, right = pair[:, :256], pair[:, 260:]
    assert not np.array_equal(left, right) and np.any(right != 100)   # the crop holds the change, at 1:1
    assert difference_views(None, b) == (None, None)
