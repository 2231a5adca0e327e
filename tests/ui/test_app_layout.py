"""The first visit in a real browser, on a phone (412x915, and 360 wide) and on a laptop
(1600x1000): nothing wider than the screen, every result picture inside it, identity bars long
enough to read, labels not clipped, no console errors or warnings; screenshots in test-artifacts/.
Timings (page load to the first generated image, example click to a new image) are printed, not
asserted (the README and the closing note give measured figures)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from idface.testing.browser import WATCH_OUTPUT, chromium_page, outputs_after

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RESULT_PICTURES = ["#generated img", ".result-pic.face-style img", ".result-pic.face-identity img"]


def open_app(page, url: str) -> float:
    """Load the page; -> seconds from navigation to the first generated image."""
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#generated img", state="attached", timeout=120_000)
    seconds = time.perf_counter() - start
    page.wait_for_selector("#mask_editor canvas.mask-canvas", timeout=120_000)
    page.evaluate(WATCH_OUTPUT)
    return seconds


@pytest.mark.slow
@pytest.mark.parametrize("width,height", [(360, 800), (412, 915), (1600, 1000)])
def test_layout_fits_the_screen(launched_app, width, height):
    url, _ = launched_app
    with chromium_page(width, height) as page:
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        seconds = open_app(page, url)
        page.locator("#identity_bars").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        scroll_width, inner_width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width, f"the page scrolls sideways: {scroll_width} > {inner_width}"
        for selector in RESULT_PICTURES:
            box = page.locator(selector).first.bounding_box()
            assert box and box["width"] >= 80 and box["height"] >= 80, (selector, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= inner_width + 0.5, (selector, box, inner_width)
            assert abs(box["width"] - box["height"]) < 2, (selector, box)  # square faces stay square
        tracks = [page.locator(".idbar-track").nth(i).bounding_box()["width"]
                  for i in range(page.locator(".idbar-track").count())]
        assert tracks and min(tracks) >= (150 if width < 1000 else 200), tracks
        for label in page.locator(".labelled-pic label[data-testid='block-label']").all():
            clipped = label.evaluate("el => el.scrollWidth > el.clientWidth + 1")
            assert not clipped, label.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"app_{width}x{height}.png"), full_page=True)
        print(f"{width}x{height}: first generated image {seconds:.2f} s after navigation; bars {min(tracks):.0f} px")
    assert not console, console


@pytest.mark.slow
def test_example_click_reuses_the_prepared_example(launched_app):
    """Clicking a bundled example face gives a new image without preparing the photo again."""
    url, _ = launched_app
    with chromium_page(1600, 1000) as page:
        open_app(page, url)
        page.wait_for_timeout(300)
        clicked = page.evaluate("() => performance.now()")
        page.locator("#style_examples .ex").nth(2).click()
        new = outputs_after(page, clicked)
        print(f"example click to a new generated image: {(new - clicked) / 1000:.2f} s")
