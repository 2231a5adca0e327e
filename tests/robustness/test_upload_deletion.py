"""Uploaded photos and served outputs are deleted on the schedule the app sets (gr.Blocks
delete_cache from idface.ui.sessions.delete_cache_schedule; IDFACE_DELETE_CACHE overrides it,
here to every second for files older than 2 s)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from idface.ui.sessions import DEFAULT_DELETE_CACHE, delete_cache_schedule

pytestmark = pytest.mark.slow

FACES = Path(__file__).resolve().parents[2] / "assets" / "faces"


def test_schedule_default_and_override(monkeypatch):
    monkeypatch.delenv("IDFACE_DELETE_CACHE", raising=False)
    assert delete_cache_schedule() == DEFAULT_DELETE_CACHE == (300, 900)
    monkeypatch.setenv("IDFACE_DELETE_CACHE", "5,60")
    assert delete_cache_schedule() == (5, 60)
    monkeypatch.setenv("IDFACE_DELETE_CACHE", "soon")
    assert delete_cache_schedule() == DEFAULT_DELETE_CACHE


def test_uploads_and_outputs_deleted_on_schedule(robust_engine, launch_app, tmp_path):
    from idface.testing.browser import BrowserSession

    with launch_app(robust_engine, delete_cache="1,2") as (url, demo):
        assert demo.delete_cache == (1, 2)
        s = BrowserSession(url)
        try:
            # a visitor's own photo (not byte-identical to the bundled examples the page shows by
            # default, which Gradio rightly keeps in its cache)
            from PIL import Image, ImageOps

            photo = tmp_path / "visitor.png"
            ImageOps.mirror(Image.open(FACES / "grace_hopper.jpg")).save(photo)
            uploaded = s.upload(photo)
            ok, out, _ = s.run(s.fn_index("style_in", "change"), [uploaded])
            assert ok and out[2] is not None, out
            files = [Path(uploaded["path"]), Path(out[2]["path"])]  # the upload, the served crop
            deadline = time.time() + 20
            while any(f.exists() for f in files) and time.time() < deadline:
                time.sleep(0.5)
            assert not any(f.exists() for f in files), [str(f) for f in files if f.exists()]
        finally:
            s.close()
