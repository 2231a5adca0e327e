"""Property-based tests of everything that turns visitor-controlled data into a label map: the
editor's wire format (idface.ui.maskcodec), mask images (idface.images.load_mask,
snap_colors_to_index) and label conversions (idface.labels). Each input either gives a valid
uint8 label map (values 0..18, the promised shape) or a one-line InputError; never another
exception, never a hang."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from idface.errors import InputError
from idface.images import SNAP_TOLERANCE, load_mask, snap_colors_to_index
from idface.labels import (
    FLIP_PERMUTATION, NUM_CLASSES, PALETTE, color_to_index, flip_label_map, index_to_color, index_to_onehot,
    onehot_to_index, validate_label_map,
)
from idface.ui.maskcodec import MAX_SIDE, decode_label_map, encode_label_map

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
label_maps = shapes.flatmap(lambda s: hnp.arrays(np.uint8, s, elements=st.integers(0, NUM_CLASSES - 1)))


def assert_valid_label_map(lm, shape=None):
    assert isinstance(lm, np.ndarray) and lm.dtype == np.uint8 and lm.ndim == 2
    assert lm.size and int(lm.max()) < NUM_CLASSES
    if shape is not None:
        assert lm.shape == tuple(shape)


def one_line(err: Exception) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def label_map_or_clear_error(decode, value, shape=None):
    """decode(value) gives a valid label map (of `shape` when given), returned, or a one-line
    InputError (None is returned)."""
    try:
        lm = decode(value)
    except InputError as err:
        one_line(err)
        return None
    assert_valid_label_map(lm, shape)
    return lm


# ---- the editor's wire format ----

@FAST
@given(label_maps)
def test_wire_format_round_trip(lm):
    assert np.array_equal(decode_label_map(encode_label_map(lm)), lm)


@FAST
@given(st.text(max_size=200))
def test_wire_format_arbitrary_text(text):
    label_map_or_clear_error(decode_label_map, text)


numbers = st.one_of(st.integers(-5, 30), st.integers(-2**70, 2**70), st.just(2**63 - 1), st.just(2**64 + 1))


@FAST
@given(st.integers(-3, MAX_SIDE + 3), st.integers(-3, MAX_SIDE + 3), st.lists(numbers, max_size=12))
def test_wire_format_hostile_numbers(h, w, runs):
    """Headers and runs chosen to overflow, go negative or not add up: InputError, never a crash
    or a giant allocation."""
    text = f"{h},{w}|" + ",".join(map(str, runs))
    label_map_or_clear_error(decode_label_map, text, (h, w))


@pytest.mark.parametrize("text", [
    "1,1|0,18446744073709551615,0,2",             # counts overflow int64 and wrap to 1
    "1,1|1,9223372036854775807,1,9223372036854775807,1,3",  # wrap-around sum == h*w
    "2,2|0,99999999999999999999999",                # beyond int64
    "1024,1024|" + ",".join(["1,1"] * 10) + ",0," + str(1024 * 1024 - 10),  # valid, large
    "3,3|0,9" + ",0,0" * 200_000,                    # runs of length 0, long text
    "1,1|" + "7," * 2_000_000 + "1",                # far more numbers than pixels
])
def test_wire_format_crafted(text):
    label_map_or_clear_error(decode_label_map, text)


# ---- mask images ----

@FAST
@given(shapes.flatmap(lambda s: hnp.arrays(np.uint8, s + (3,))))
def test_load_mask_random_colour_arrays(arr):
    label_map_or_clear_error(load_mask, arr, arr.shape[:2])


@FAST
@given(shapes.flatmap(lambda s: hnp.arrays(st.sampled_from([np.int16, np.int64, np.float32, np.float64, np.uint16]), s)))
def test_load_mask_index_arrays_any_dtype(arr):
    lm = label_map_or_clear_error(load_mask, arr, arr.shape)
    if lm is not None:
        assert np.array_equal(lm, arr.astype(np.int64))


blocky_maps = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda s: hnp.arrays(np.uint8, s, elements=st.integers(0, NUM_CLASSES - 1))
).map(lambda small: np.kron(small, np.ones((4, 4), np.uint8)))  # every region at least 4x4


@FAST
@given(blocky_maps, st.integers(0, 2**32 - 1))
def test_snap_recovers_classes_under_noise(lm, seed):
    """A colour mask with per-channel noise within the snapping tolerance snaps back to exactly
    the painted classes."""
    noise = np.random.default_rng(seed).integers(-9, 10, lm.shape + (3,))  # |noise| <= 9*sqrt(3) < tolerance
    assert np.sqrt(3) * 9 < SNAP_TOLERANCE
    rgb = np.clip(PALETTE[lm].astype(np.int64) + noise, 0, 255).astype(np.uint8)
    assert np.array_equal(snap_colors_to_index(rgb), lm)


@FAST
@given(blocky_maps, st.sampled_from(["index", "colour", "gray"]), st.sampled_from([None, 17, 64]))
def test_load_mask_png_files(lm, kind, size):
    """Index PNG (palette), colour PNG and grayscale index PNG of the same map decode to it."""
    buf = io.BytesIO()
    if kind == "index":
        img = Image.frombytes("P", (lm.shape[1], lm.shape[0]), lm.tobytes())
        pal = np.zeros((256, 3), np.uint8)
        pal[:NUM_CLASSES] = PALETTE
        img.putpalette(pal.flatten().tolist())
    elif kind == "colour":
        img = Image.fromarray(PALETTE[lm])
    else:
        img = Image.fromarray(lm, mode="L")
    img.save(buf, format="PNG")
    if size is not None and lm.shape[0] != lm.shape[1]:
        with pytest.raises(InputError, match="must be square"):  # never stretched silently
            load_mask(buf.getvalue(), size=size)
        return
    out = load_mask(buf.getvalue(), size=size)
    if size is None:
        assert np.array_equal(out, lm)
    else:
        assert_valid_label_map(out, (size, size))
        assert set(np.unique(out)) <= set(np.unique(lm))


# ---- label conversions ----

@FAST
@given(label_maps)
def test_label_conversions_round_trip(lm):
    assert np.array_equal(color_to_index(index_to_color(lm)), lm)
    onehot = index_to_onehot(lm)
    assert onehot.shape[0] == NUM_CLASSES and np.array_equal(onehot_to_index(onehot), lm)
    assert np.array_equal(flip_label_map(flip_label_map(lm)), lm)
    assert np.array_equal(flip_label_map(lm), FLIP_PERMUTATION[lm[:, ::-1]])


@FAST
@given(shapes.flatmap(lambda s: hnp.arrays(st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.float32, np.float64, np.bool_]), s)))
def test_validate_label_map_any_numeric_array(arr):
    lm = label_map_or_clear_error(validate_label_map, arr, arr.shape)
    if lm is not None:
        assert np.array_equal(lm.astype(np.float64), arr.astype(np.float64))


@FAST
@given(shapes.flatmap(lambda s: hnp.arrays(st.sampled_from([np.uint16, np.int32, np.int64]), s + (3,),
                                           elements=st.integers(0, 600))))
def test_color_to_index_rejects_non_palette_colours(arr):
    """Values outside 0..255 must not alias onto a palette colour (e.g. (0, 256, 0) is not (1, 0, 0))."""
    assume(arr.size)
    lm = label_map_or_clear_error(color_to_index, arr, arr.shape[:2])
    if lm is not None:
        assert np.array_equal(PALETTE[lm].astype(np.int64), arr.astype(np.int64))


def test_color_to_index_out_of_range_channel_does_not_alias():
    odd_green = next(i for i, c in enumerate(PALETTE) if c[1] % 2)
    colour = PALETTE[odd_green].astype(np.int64)
    colour[2] += 256  # its code (r << 16 | g << 8 | b) would equal the palette colour's
    with pytest.raises(InputError, match="0..255"):
        color_to_index(colour[None, None])
