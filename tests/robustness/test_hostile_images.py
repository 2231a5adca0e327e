"""Fuzz pass over the image decoding entry points (idface.images.load_image / load_mask, which
the app, its API and the CLI all decode through): random bytes, truncated PNG/JPEG, decompression
bombs, 1x1 and 20000x20000 images, NaN-producing float TIFFs, odd modes. Each case must give a
valid result or a one-line InputError, within a time bound, with the pixel budget
(idface.images.MAX_PIXELS) applied before anything large is decoded."""

from __future__ import annotations

import io
import signal
import struct
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from idface.errors import InputError
from idface.images import MAX_PIXELS, MIN_SIDE, load_image, load_mask

FACES = Path(__file__).resolve().parents[2] / "assets" / "faces"
TIME_BOUND_S = 10.0  # generous on a shared 2-core machine; a decode bomb or a hang takes far longer


@contextmanager
def time_bound(seconds: float = TIME_BOUND_S):
    """Fail a case that runs longer than `seconds` (SIGALRM interrupts Python-level loops; the
    elapsed check catches a C-level decode that could not be interrupted)."""
    def alarm(*_):
        raise TimeoutError(f"decoding took over {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - start < seconds


def decode_or_input_error(data, entry=load_image):
    """-> the decoded array, or the InputError message (which must be one line)."""
    with time_bound():
        try:
            out = entry(data)
        except InputError as err:
            text = str(err)
            assert text and "\n" not in text
            return text
    if entry is load_image:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and min(out.shape[:2]) >= MIN_SIDE
    else:
        assert out.dtype == np.uint8 and out.ndim == 2 and int(out.max()) < 19
    return out


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int, mode_byte: int = 2) -> bytes:
    """A PNG whose header claims width x height (8-bit, colour type mode_byte) with a tiny IDAT:
    what a decompression-bomb upload looks like before it is expanded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


REAL_PNG = png_bytes(Image.open(FACES / "astronaut.png").convert("RGB").resize((96, 96)))
REAL_JPEG = (FACES / "obama.jpg").read_bytes()


# ---- random and damaged bytes ----

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"II*\x00", b"RIFF"]))
def test_random_bytes(blob, magic):
    decode_or_input_error(magic + blob)
    decode_or_input_error(magic + blob, load_mask)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["png", "jpeg"]), st.floats(0.0, 0.999))
def test_truncated_files(kind, keep):
    data = REAL_PNG if kind == "png" else REAL_JPEG
    decode_or_input_error(data[: int(len(data) * keep)])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["png", "jpeg"]), st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_bytes(kind, flips):
    data = bytearray(REAL_PNG if kind == "png" else REAL_JPEG)
    for where, value in flips:
        data[int(len(data) * where)] = value
    decode_or_input_error(bytes(data))


# ---- sizes and bombs ----

@pytest.mark.parametrize("w, h", [(20000, 20000), (100000, 100000), (2**31 - 1, 1), (MAX_PIXELS // 1000 + 1, 1000)])
def test_bomb_headers_refused_before_decoding(w, h):
    message = decode_or_input_error(png_header_only(w, h))
    assert isinstance(message, str) and ("megapixel" in message or "too large" in message), message


def test_real_decompression_bomb_refused():
    """64 megapixels of one colour compress to a few kB; refused from the header."""
    bomb = png_bytes(Image.new("1", (8000, 8000)), optimize=True)
    assert len(bomb) < 200_000
    message = decode_or_input_error(bomb)
    assert isinstance(message, str) and "megapixel" in message


def test_pixel_budget_applies_to_arrays_without_copying():
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))  # no memory behind it
    message = decode_or_input_error(huge)
    assert isinstance(message, str) and "pixel limit" in message


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 500), (500, 1)])
def test_tiny_images_are_a_clear_error(size):
    message = decode_or_input_error(png_bytes(Image.new("RGB", size, (200, 150, 120))))
    assert isinstance(message, str) and "pixels" in message


def test_one_pixel_mask_is_valid():
    out = decode_or_input_error(png_bytes(Image.new("L", (1, 1), 13)), load_mask)
    assert out.shape == (1, 1) and out[0, 0] == 13


# ---- NaN-producing and odd modes ----

def tiff_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.float32), mode="F").save(buf, format="TIFF")
    return buf.getvalue()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_nan_or_inf(bad):
    arr = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    arr[10, 10] = bad
    message = decode_or_input_error(tiff_bytes(arr))
    assert isinstance(message, str) and "NaN or infinite" in message
    message = decode_or_input_error(tiff_bytes(arr), load_mask)
    assert isinstance(message, str)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_arrays_with_nan(bad):
    arr = np.random.default_rng(0).random((64, 64, 3))
    arr[0, 0, 0] = bad
    message = decode_or_input_error(arr)
    assert isinstance(message, str) and "NaN" in message


@pytest.mark.parametrize("values", [(0.0, 1.0), (-1e30, 1e30), (0.0, 65535.0)])
def test_float_tiff_ranges_decode(values):
    arr = np.linspace(*values, 64 * 64).reshape(64, 64)
    out = decode_or_input_error(tiff_bytes(arr))
    assert isinstance(out, np.ndarray)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV", "LAB"])
def test_every_pil_mode_decodes_or_is_refused(mode):
    img = Image.open(FACES / "grace_hopper.jpg").convert("RGB").resize((80, 80)).convert(mode) \
        if mode not in ("I;16", "PA") else Image.new(mode, (80, 80))
    out = decode_or_input_error(img)
    assert isinstance(out, np.ndarray), out


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "TGA"])
def test_other_formats(fmt):
    img = Image.open(FACES / "grace_hopper.jpg").convert("RGB").resize((96, 96))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    out = decode_or_input_error(buf.getvalue())
    assert isinstance(out, np.ndarray)
    assert out.shape[:2] == ((64, 64) if fmt == "ICO" else (96, 96))  # ICO keeps icon sizes up to 64 here


def test_exif_orientation_garbage_does_not_break_decoding():
    img = Image.open(FACES / "grace_hopper.jpg").convert("RGB").resize((96, 96))
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    out = decode_or_input_error(buf.getvalue())
    assert isinstance(out, np.ndarray) and out.shape[:2] == (96, 96)


@pytest.mark.parametrize("source", ["", "/no/such/file.png", "/", b""])
def test_paths_and_empty(source):
    message = decode_or_input_error(source)
    assert isinstance(message, str)
