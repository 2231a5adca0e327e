"""What bounds the server's memory and disk per visitor, checked on the launched app: the queue
size, the session cap and state time-to-live, the upload size cap (idface.ui.sessions; figures
under load: scripts/load_test.py)."""

from __future__ import annotations

import uuid

import gradio as gr
import httpx
import pytest

from idface.ui.sessions import MAX_SESSIONS, SESSION_TTL_S

pytestmark = pytest.mark.slow


def test_limits_are_configured(robust_app):
    import app

    _, demo = robust_app
    assert demo.state_holder.capacity == MAX_SESSIONS
    assert demo._queue.max_size == app.MAX_QUEUE
    assert demo.max_file_size == 25 * 1024 * 1024
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert states and all(s.time_to_live == SESSION_TTL_S for s in states)
    assert any(t[1] == "unload" for dep in demo.fns.values() for t in dep.targets)


def test_upload_over_the_cap_is_refused(robust_app):
    url, _ = robust_app
    big = b"\0" * (26 * 1024 * 1024)
    r = httpx.post(url + "gradio_api/upload", files={"files": ("huge.png", big)}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text


def test_session_store_is_capped(robust_app):
    """More visitors than MAX_SESSIONS: the store stays at the cap (least recently used out)."""
    from idface.testing.browser import BrowserSession

    url, demo = robust_app
    s = BrowserSession(url)
    fn = s.fn_index("mask_editor", "input")
    first = None
    try:
        for i in range(MAX_SESSIONS + 5):
            s.session_hash = uuid.uuid4().hex[:11]
            first = first or s.session_hash
            ok, out, _ = s.run(fn, [None, None, None, "none", [], "identity"])
            assert ok
        assert len(demo.state_holder.session_data) <= MAX_SESSIONS
        assert first not in demo.state_holder
    finally:
        s.close()
