"""A real browser paints one stroke of one class: the label map the server receives holds exactly
that class under the stroke (nothing else at its edges), and the generated face updates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from idface.labels import CLASS_INDEX
from idface.testing.browser import chromium_page, outputs_after, paint_stroke, select_class, wait_ready

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not receive the edit")
        time.sleep(0.05)


@pytest.mark.slow
def test_stroke_gives_exact_class_and_new_output_plumbing_checkpoint(launched_app):
    url, recorder = launched_app
    hat = CLASS_INDEX["hat"]
    stroke = [(0.2, 0.3), (0.5, 0.45), (0.8, 0.3)]
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        wait_ready(page, url)
        before_count = len(recorder.label_maps)
        assert before_count >= 1, "the first visit did not generate"
        before = recorder.label_maps[-1]
        select_class(page, "Hat")
        page.fill("#mask_editor input.brush", "5")
        page.dispatch_event("#mask_editor input.brush", "input")
        released = paint_stroke(page, stroke)
        outputs_after(page, released)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app_after_stroke.png"), full_page=True)
        after_hat = len(recorder.label_maps)
        # the eraser paints Background, and only Background
        page.click("#mask_editor .eraser")
        outputs_after(page, paint_stroke(page, [(0.5, 0.7), (0.5, 0.9)]))
        erased_before, erased_after = recorder.label_maps[after_hat - 1], recorder.label_maps[-1]
        # undo brings the Hat stroke's map back exactly
        n = len(recorder.label_maps)
        page.click("#mask_editor .undo")
        wait_for(lambda: len(recorder.label_maps) > n)
        undone = recorder.label_maps[-1]
    assert not errors, errors
    assert len(recorder.label_maps) > before_count
    after = recorder.label_maps[-1]
    assert after.shape == before.shape == (256, 256)
    changed = after != before
    assert changed.sum() > 200, "the stroke did not reach the server"
    assert set(np.unique(after[changed]).tolist()) == {hat}, "a stroke of Hat produced other classes"
    # every pixel on the stroke's path is Hat
    h, w = after.shape
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        for t in np.linspace(0, 1, 50):
            x, y = int((x0 + (x1 - x0) * t) * w), int((y0 + (y1 - y0) * t) * h)
            assert after[min(y, h - 1), min(x, w - 1)] == hat
    # the stroke is a band around its path: nothing changed far from it
    ys, xs = np.nonzero(changed)
    assert ys.min() >= int(0.3 * h) - 8 and ys.max() <= int(0.45 * h) + 8
    erased = erased_after != erased_before
    assert erased.sum() > 100 and set(np.unique(erased_after[erased]).tolist()) == {0}
    np.testing.assert_array_equal(undone, erased_before)
