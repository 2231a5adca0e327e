"""Colour masks cost memory in proportion to what the generator uses, not to the file's pixels:
a 134 KB 6300x6300 colour mask used to grow the server to 24 GB (issue 17). Memory is measured in
a fresh interpreter (peak RSS from getrusage), so nothing else in the test run pollutes it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

from idface.errors import InputError
from idface.images import MAX_MASK_SIDE, load_mask
from idface.labels import PALETTE, class_index


def colour_mask_png(side: int, width: int | None = None) -> bytes:
    """A black square with one skin-coloured ellipse, as a colour PNG (compresses to almost nothing)."""
    width = width or side
    img = Image.new("RGB", (width, side), (0, 0, 0))
    ImageDraw.Draw(img).ellipse((width // 4, side // 5, 3 * width // 4, 4 * side // 5),
                                fill=tuple(int(v) for v in PALETTE[class_index("skin")]))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


PEAK_RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    from idface.errors import InputError
    from idface.images import load_mask
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        out = load_mask(data, size=int(sys.argv[2]))
        result = {"shape": list(out.shape), "classes": sorted(int(c) for c in set(out.ravel().tolist()))}
    except InputError as err:
        result = {"error": str(err)}
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(result))
""")


def load_in_fresh_process(tmp_path, data: bytes, size: int) -> dict:
    path = tmp_path / "mask.png"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(path), str(size)],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_huge_colour_mask_is_refused_from_its_header(tmp_path):
    data = colour_mask_png(6300)
    assert len(data) < 200_000  # the attack is a small file
    result = load_in_fresh_process(tmp_path, data, 512)
    print(result)
    assert "6300x6300" in result["error"] and str(MAX_MASK_SIDE) in result["error"]
    assert "\n" not in result["error"]
    assert result["peak_rss_growth_mb"] < 100


@pytest.mark.slow
def test_large_colour_mask_is_matched_at_the_generator_size(tmp_path):
    """2000x2000 (formerly +2.35 GB and 24 s): decoded, then matched at 512, so the growth is
    about the decoded image."""
    result = load_in_fresh_process(tmp_path, colour_mask_png(2000), 512)
    print(result)
    assert result["shape"] == [512, 512]
    assert result["classes"] == [0, class_index("skin")]
    assert result["peak_rss_growth_mb"] < 100


def test_full_resolution_colour_matching_is_a_few_bytes_per_pixel():
    """Without a target size (training data, the parse CLI) the whole mask is matched, one
    distinct colour at a time: an antialiased 1500x1500 mask stays far below the old ~600 B/px."""
    import tracemalloc

    lm = np.zeros((1500, 1500), np.uint8)
    lm[300:1200, 400:1100] = class_index("skin")
    rgb = PALETTE[lm].astype(np.float32)
    rgb[:, 399] = 0.5 * rgb[:, 398] + 0.5 * rgb[:, 400]  # a blended edge column to fill in
    rgb = rgb.astype(np.uint8)
    tracemalloc.start()
    out = load_mask(rgb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert set(np.unique(out).tolist()) == {0, class_index("skin")}
    assert peak / lm.size < 40, f"{peak / lm.size:.0f} bytes per pixel"


@pytest.mark.parametrize("shape", [(37, 100), (1, 1), (512, 400)])
def test_mask_for_generation_must_be_square(shape):
    lm = np.zeros(shape, np.uint8)
    if min(shape) < 2:
        load_mask(lm, size=64)  # 1x1 is square: a valid (if useless) all-background mask
        return
    with pytest.raises(InputError, match="must be square"):
        load_mask(lm, size=64)
    with pytest.raises(InputError, match="must be square"):
        load_mask(colour_mask_png(shape[0], shape[1]), size=64)
