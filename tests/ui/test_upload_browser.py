"""A real browser uploads a style face: it is prepared once (Gradio fires the photo input's change
twice for one upload; the repeat must be a lookup), its mask reaches the editor and the generator,
and a new face is generated."""

from __future__ import annotations

import numpy as np
import pytest

from idface.testing.browser import chromium_page, outputs_after, wait_ready


@pytest.mark.slow
def test_one_upload_prepares_once_and_generates_from_its_mask(launched_app, plumbing_engine, faces_dir, tmp_path,
                                                               monkeypatch):
    url, recorder = launched_app
    prepared = []
    original = plumbing_engine.prepare

    def counting(photo, what="face"):
        face = original(photo, what)
        prepared.append((str(photo), face))
        return face

    monkeypatch.setattr(plumbing_engine, "prepare", counting)
    upload = tmp_path / "visitor.jpg"  # new bytes (not the bundled example's), same picture
    upload.write_bytes((faces_dir / "obama2.jpg").read_bytes() + b"\0")
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        wait_ready(page, url)
        n_prepared, n_generated = len(prepared), len(recorder.label_maps)
        started = page.evaluate("() => performance.now()")
        page.set_input_files("#style_in input[type=file]", str(upload))
        outputs_after(page, started)
        page.wait_for_timeout(1500)  # let a repeated change event (if any) finish
    assert not errors, errors
    visitor = [face for path, face in prepared[n_prepared:] if path.endswith("visitor.jpg")]
    assert len(visitor) == 1, f"the upload was prepared {len(visitor)} times"
    assert len(recorder.label_maps) > n_generated
    np.testing.assert_array_equal(recorder.label_maps[-1], visitor[0].label_map)  # its mask, via the editor
