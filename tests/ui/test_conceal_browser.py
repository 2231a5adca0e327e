"""A real browser runs the Conceal tab once (photo mode, the bundled Obama and Biden examples, the
fastest settings: a few steps, dlib only): Original, Result, the amplified change and the 1:1 crop
all appear, and nothing the visitor reads names a file on the server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idface.testing.browser import chromium_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SERVER_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|site-packages|\.venv|[A-Za-z]:\\\\)")


@pytest.mark.slow
def test_conceal_tab_shows_original_result_and_difference_view(launched_app, monkeypatch):
    import idface.conceal.api as api

    real = api.mode_settings

    def fastest(mode, settings=None):  # the app runs in this process: a few steps, raw verdict only
        s = real(mode, settings)
        s.steps, s.robust, s.samples, s.check_every = 3, False, 1, 1
        return s

    monkeypatch.setattr(api, "mode_settings", fastest)
    url, _ = launched_app
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.get_by_role("tab", name="Conceal").click()
        page.wait_for_selector("#conceal_photo img", timeout=60_000)     # the bundled examples are loaded
        page.wait_for_selector("#conceal_target img", timeout=60_000)
        attack = page.locator("#conceal_attack")
        for name in ("faceres", "faceres-deep", "arcface"):             # dlib only among the recognizers
            box = attack.get_by_label(name, exact=True)
            if box.count() and box.is_checked():
                box.uncheck()
        page.get_by_role("button", name="Conceal", exact=True).click()
        for elem in ("#conceal_original img", "#conceal_result img", "#conceal_change img", "#conceal_loupe img"):
            page.wait_for_selector(elem, timeout=240_000)
        page.wait_for_function("() => document.querySelector('#conceal_summary').innerText.length > 20",
                               timeout=60_000)
        summary = page.inner_text("#conceal_summary")
        status = page.inner_text("#conceal_status")
        bars = page.inner_text("#conceal_bars")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "conceal_tab.png"), full_page=True)
    assert not errors, errors
    assert "impersonation" in summary and "PSNR" in summary
    for text in (summary, status, bars):
        assert not SERVER_PATH.search(text), text
