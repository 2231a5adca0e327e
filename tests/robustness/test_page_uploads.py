"""Photos uploaded on the page go through idface's checks, as /generate and the CLI do: the handler
gets the uploaded file's path and decodes it with idface.images (header size and pixel budget
before any decode, one-line messages), never with Gradio's own decoder (issue 17: a 13300x13300
PNG took 18-23 s and +2.3 GB before being refused, and unreadable files showed Gradio's multi-line
error with server paths)."""

from __future__ import annotations

import resource
import struct
import time
import zlib

import pytest

pytestmark = pytest.mark.slow


def valid_gray_png(width: int, height: int) -> bytes:
    """A real, complete 8-bit grayscale PNG of zeros, compressed as it is generated (a few
    hundred KB for 13300x13300, nothing large in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row_block = b"\0" * ((width + 1) * 100)
    parts = []
    for start in range(0, height, 100):
        rows = min(100, height - start)
        parts.append(comp.compress(row_block[: (width + 1) * rows]))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def prepare_style_face(url, tmp_path, name: str, data: bytes):
    from idface.testing.browser import BrowserSession

    path = tmp_path / name
    path.write_bytes(data)
    s = BrowserSession(url)
    try:
        fn = s.fn_index("style_in", "change")
        uploaded = s.upload(path)
        return s.run(fn, [uploaded])
    finally:
        s.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_page_upload_is_refused_from_its_header(robust_app, tmp_path):
    url, _ = robust_app
    data = valid_gray_png(13300, 13300)
    before = peak_rss_mb()
    start = time.perf_counter()
    ok, out, _ = prepare_style_face(url, tmp_path, "huge.png", data)
    seconds = time.perf_counter() - start
    growth = peak_rss_mb() - before
    print(f"13300x13300 page upload ({len(data)} bytes): refused in {seconds:.2f} s, peak RSS +{growth:.0f} MB")
    assert ok, out
    state, message, crop = out[:3]  # (then the first generated face and what follows it)
    assert state is None and crop is None
    assert "13300x13300" in message and "megapixel" in message and "\n" not in message
    assert growth < 100


@pytest.mark.parametrize("name,data,words", [
    ("notes.png", b"this is not an image at all", "not an image"),
    ("cut.png", None, "corrupt or truncated"),
])
def test_unreadable_page_upload_says_one_line_without_paths(robust_app, tmp_path, faces_dir, name, data, words):
    url, _ = robust_app
    if data is None:
        data = (faces_dir / "astronaut.png").read_bytes()[:5000]  # a truncated real PNG
    ok, out, _ = prepare_style_face(url, tmp_path, name, data)
    assert ok, out
    state, message, crop = out[:3]  # (then the first generated face and what follows it)
    assert state is None and crop is None
    assert words in message and "\n" not in message
    assert "/" not in message.replace("**Problem:**", "")  # no server paths


def test_page_and_api_decode_the_same_modes(robust_engine, tmp_path, faces_dir):
    """16-bit grey and RGBA photos: the page's face preparation and /generate's load the same
    pixels (both through idface.images.load_image)."""
    import numpy as np
    from PIL import Image

    from idface.images import load_image
    from idface.ui.handlers import Handlers

    rgb = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB"))
    grey16 = Image.fromarray((rgb.mean(-1) * 257).astype(np.uint16))
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), "RGBA")
    h = Handlers(robust_engine)
    for name, img in (("grey16.png", grey16), ("rgba.png", rgba)):
        path = tmp_path / name
        img.save(path)
        face, message, crop = h.prepare_face(str(path), "style face")
        assert face is not None, message
        api_face = robust_engine.prepare(load_image(path, "style face"), "style face")
        assert np.array_equal(face.aligned, api_face.aligned)
