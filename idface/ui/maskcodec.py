"""Wire format of label maps between the browser mask editor and the server.

The editor paints class indices into a Uint8Array and sends them run-length encoded as text:

    "H,W|k0,n0,k1,n1,..."     (class index k repeated n times, row-major)

so the server receives exactly the classes that were painted: no colours, no antialiasing, no
resampling. A 256x256 face mask is a few kilobytes. Anything malformed raises InputError.
"""

from __future__ import annotations

import numpy as np

from idface.errors import InputError
from idface.labels import NUM_CLASSES, validate_label_map

# Largest map the editor may send (the generator frame is 256 or 512).
MAX_SIDE = 1024


def encode_label_map(label_map: np.ndarray) -> str:
    """uint8 [H, W] class indices -> "H,W|k,n,k,n,..." text."""
    lm = validate_label_map(label_map)
    h, w = lm.shape
    flat = lm.reshape(-1)
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    counts = np.diff(np.r_[starts, flat.size])
    pairs = np.stack([flat[starts].astype(np.int64), counts], axis=1).reshape(-1)
    return f"{h},{w}|" + ",".join(map(str, pairs.tolist()))


def decode_label_map(text: str) -> np.ndarray:
    """Inverse of encode_label_map; raises InputError naming what is wrong."""
    if not isinstance(text, str) or "|" not in text:
        raise InputError("the mask from the editor is missing or not in the 'H,W|class,count,...' format")
    head, _, body = text.strip().partition("|")
    try:
        h, w = (int(v) for v in head.split(","))
    except ValueError:
        raise InputError(f"the mask header {head[:20]!r} is not 'height,width'") from None
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InputError(f"the mask is {w}x{h}; each side must be 1..{MAX_SIDE}")
    # Bound the work before parsing: at most one run per pixel, each number at most 7 digits.
    if len(body) > 16 * h * w + 16 or body.count(",") >= 2 * h * w:
        raise InputError(f"the mask text holds more runs than a {w}x{h} mask has pixels")
    try:
        values = [int(v) for v in body.split(",")] if body else []
    except ValueError:
        raise InputError("the mask runs are not integers") from None
    if len(values) % 2:
        raise InputError("the mask runs are not (class, count) pairs")
    # range checks on Python ints, before numpy (no int64 overflow, no wrapped sums)
    if any(not 0 <= k < NUM_CLASSES for k in values[0::2]):
        raise InputError(f"the mask holds class indices outside 0..{NUM_CLASSES - 1}")
    if any(n < 1 for n in values[1::2]):
        raise InputError("the mask holds a run of length < 1")
    if any(n > h * w for n in values[1::2]):
        raise InputError(f"the mask holds a run longer than its {h * w} pixels")
    pairs = np.array(values, dtype=np.int64)
    classes, counts = pairs[0::2], pairs[1::2]
    if int(counts.sum()) != h * w:
        raise InputError(f"the mask runs cover {int(counts.sum())} pixels, not {h}x{w}={h * w}")
    return np.repeat(classes.astype(np.uint8), counts).reshape(h, w)
