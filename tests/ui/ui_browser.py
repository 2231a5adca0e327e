"""Debian's Chromium driven by Playwright, for the browser test and scripts/bench_stroke.py."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]

# JS: remember when the generated image's src last changed (performance.now()).
WATCH_OUTPUT = """
() => {
  const root = document.querySelector('#generated');
  window.__outputs = window.__outputs || [];
  const note = () => {
    const img = root.querySelector('img');
    const src = img ? img.getAttribute('src') : null;
    if (src && src !== window.__lastSrc) { window.__lastSrc = src; window.__outputs.push(performance.now()); }
  };
  new MutationObserver(note).observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
  note();
}
"""


@contextmanager
def chromium_page(width: int = 1500, height: int = 1100):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_ready(page, url: str, timeout_ms: int = 120_000) -> None:
    """Open the app and wait for the first generated image."""
    page.goto(url)
    page.wait_for_selector("#mask_editor canvas.mask-canvas", timeout=timeout_ms)
    page.wait_for_selector("#generated img", timeout=timeout_ms)
    page.evaluate(WATCH_OUTPUT)


def select_class(page, display_name: str) -> None:
    page.click(f"#mask_editor .cls:has-text('{display_name}')")


def paint_stroke(page, points: list[tuple[float, float]], steps: int = 6) -> float:
    """Drag through points given as fractions of the canvas; returns performance.now() at release."""
    box = page.locator("#mask_editor canvas.mask-canvas").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=steps)
    released = page.evaluate("() => performance.now()")
    page.mouse.up()
    return released


def outputs_after(page, t: float, timeout_ms: int = 60_000) -> float:
    """Wait until the generated image changes after time t; returns that time."""
    page.wait_for_function("t => (window.__outputs || []).some(x => x > t)", arg=t, timeout=timeout_ms)
    return page.evaluate("t => window.__outputs.find(x => x > t)", t)
