"""Driving the running app as a browser does, for tests and scripts.

- chromium_page, wait_ready, select_class, paint_stroke, outputs_after: Debian's Chromium through
  Playwright (tests/ui/test_app_browser.py, scripts/bench_stroke.py).
- BrowserSession: the page's own HTTP protocol (upload, /queue/join, /queue/data) on one session,
  without a browser (tests/robustness, scripts/load_test.py).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

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


class BrowserSession:
    """The page's protocol on one session hash: upload files, run events by fn_index (private
    events included, as the browser does), read results from the SSE stream."""

    def __init__(self, url: str, timeout: float = 300.0):
        import httpx

        self.url = url.rstrip("/") + "/"
        self.session_hash = uuid.uuid4().hex[:11]
        self.http = httpx.Client(timeout=timeout)
        self.timeout = timeout
        self.config = self.http.get(self.url + "config").json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def open_heartbeat(self) -> None:
        """Keep the session's heartbeat connection open, as the page does; close() drops it,
        which the server takes as the visitor leaving (unload)."""
        import httpx

        self._leaving = threading.Event()

        def beat():
            try:
                with httpx.Client(timeout=None) as http, \
                        http.stream("GET", self.url + f"gradio_api/heartbeat/{self.session_hash}") as stream:
                    for _ in stream.iter_lines():
                        if self._leaving.is_set():
                            break
            except Exception:
                pass

        self._heartbeat = threading.Thread(target=beat, daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        if getattr(self, "_heartbeat", None) is not None:
            self._leaving.set()  # the beat thread hangs up at the next heartbeat line (<= 15 s)
        self.http.close()

    def component_id(self, elem_id: str) -> int:
        for cid, comp in self.components.items():
            if comp.get("props", {}).get("elem_id") == elem_id:
                return cid
        raise KeyError(elem_id)

    def fn_index(self, elem_id: str, event: str) -> int:
        """The first dependency triggered by `event` on the component with `elem_id`."""
        cid = self.component_id(elem_id)
        for dep in self.config["dependencies"]:
            if [cid, event] in [list(t) for t in dep["targets"]]:
                return dep["id"]
        raise KeyError(f"{elem_id}.{event}")

    def upload(self, path: Path) -> dict:
        with open(path, "rb") as fh:
            r = self.http.post(self.url + "gradio_api/upload", files={"files": (path.name, fh)})
        r.raise_for_status()
        server_path = r.json()[0]
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def initial_inputs(self, fn_index: int) -> list:
        """The event's inputs as a freshly loaded page holds them (each component's initial value)."""
        dep = next(d for d in self.config["dependencies"] if d["id"] == fn_index)
        return [self.components[cid].get("props", {}).get("value") for cid in dep["inputs"]]

    def run(self, fn_index: int, data: list) -> tuple[bool, list | str, float | None]:
        """-> (success, output data or error text, queue wait in s). Inputs left out at the end of
        `data` are sent with the page's initial values (initial_inputs), as the browser would."""
        initial = self.initial_inputs(fn_index)
        data = list(data) + initial[len(data):]
        sent = time.perf_counter()
        r = self.http.post(self.url + "gradio_api/queue/join", json={
            "data": data, "fn_index": fn_index, "session_hash": self.session_hash,
            "event_data": None, "trigger_id": None,
        })
        if r.status_code != 200:
            return False, f"HTTP {r.status_code}: {r.text[:200]}", None
        event_id = r.json()["event_id"]
        wait = None
        with self.http.stream("GET", self.url + "gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                if msg.get("msg") == "process_starts" and wait is None:
                    wait = time.perf_counter() - sent
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if msg.get("success"):
                        return True, out.get("data", []), wait
                    return False, str(out.get("error") or out)[:300], wait
                if msg.get("msg") == "unexpected_error":
                    return False, str(msg.get("message"))[:300], wait
        return False, "stream ended without a result", wait
