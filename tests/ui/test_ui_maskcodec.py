"""The editor's wire format carries class indices exactly, and rejects malformed text."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idface.errors import InputError
from idface.labels import NUM_CLASSES
from idface.ui.maskcodec import decode_label_map, encode_label_map


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), runs=st.booleans())
def test_round_trip_is_exact(h, w, seed, runs):
    rng = np.random.default_rng(seed)
    lm = rng.integers(0, NUM_CLASSES, size=(h, w), dtype=np.uint8)
    if runs:  # long runs, like real masks
        lm = np.sort(lm, axis=1)
    text = encode_label_map(lm)
    out = decode_label_map(text)
    assert out.dtype == np.uint8 and out.shape == (h, w)
    np.testing.assert_array_equal(out, lm)


def test_face_mask_is_compact():
    lm = np.zeros((256, 256), np.uint8)
    lm[40:220, 60:200] = 1
    lm[100:110, 80:100] = 4
    assert len(encode_label_map(lm)) < 5000


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "missing"),
        ("garbage", "missing"),
        ("2,2|0,3", "cover 3 pixels"),
        ("2,2|19,4", "outside 0..18"),
        ("2,2|1,2,3", "pairs"),
        ("2,2|1,0,1,4", "length < 1"),
        ("x,2|1,4", "height,width"),
        ("5000,2|1,10000", "each side"),
        ("2,2|a,4", "integers"),
    ],
)
def test_malformed_text_is_a_readable_error(text, words):
    with pytest.raises(InputError, match=words):
        decode_label_map(text)
