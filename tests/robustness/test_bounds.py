"""What bounds the server's memory and disk per visitor, checked on the launched app: the queue
size, the session cap and state time-to-live, the upload size cap (idface.ui.sessions; figures
under load: scripts/load_test.py)."""

from __future__ import annotations

import uuid

import gradio as gr
import httpx
import pytest

from idface.ui.sessions import MAX_SESSIONS, SESSION_TTL_S, session_holds_something

pytestmark = pytest.mark.slow


def test_limits_are_configured(robust_app):
    import app

    _, demo = robust_app
    assert demo.state_holder.capacity == MAX_SESSIONS
    assert demo._queue.idface_max_size == app.MAX_QUEUE  # generation and faces; expensive calls have their own caps
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


def test_junk_sessions_do_not_evict_a_visitor_with_faces(robust_app, faces_dir):
    """MAX_SESSIONS + 20 requests from new session ids that hold nothing (each fails) leave the
    visitor who prepared a face in the store (issue 17: 200 failing calls pushed one out)."""
    from idface.testing.browser import BrowserSession

    url, demo = robust_app
    visitor = BrowserSession(url)
    junk = BrowserSession(url)
    try:
        ok, out, _ = visitor.run(visitor.fn_index("style_in", "change"),
                                 [visitor.upload(faces_dir / "obama.jpg")])
        assert ok and out[1] == "1 face found", out
        assert session_holds_something(demo.state_holder.session_data[visitor.session_hash])
        fn = junk.fn_index("mask_editor", "input")
        for _ in range(MAX_SESSIONS + 20):
            junk.session_hash = uuid.uuid4().hex[:11]
            junk.run(fn, [None, None, None, "none", [], "identity"])
        assert len(demo.state_holder.session_data) <= MAX_SESSIONS
        assert visitor.session_hash in demo.state_holder
        assert session_holds_something(demo.state_holder.session_data[visitor.session_hash])
    finally:
        visitor.close()
        junk.close()
