import numpy as np
import pytest

from idface import labels
from idface.errors import InputError


def test_nineteen_classes_in_celebamask_order():
    assert labels.NUM_CLASSES == 19
    assert labels.CLASS_NAMES[0] == "background" and labels.CLASS_NAMES[13] == "hair"
    assert labels.PALETTE.shape == (19, 3)
    assert len({tuple(c) for c in labels.PALETTE}) == 19


def test_index_color_onehot_round_trip(rng):
    lm = rng.integers(0, 19, size=(37, 41)).astype(np.uint8)
    assert np.array_equal(labels.color_to_index(labels.index_to_color(lm)), lm)
    onehot = labels.index_to_onehot(lm)
    assert onehot.shape == (19, 37, 41) and np.all(onehot.sum(0) == 1)
    assert np.array_equal(labels.onehot_to_index(onehot), lm)


def test_unknown_index_is_rejected_with_its_value():
    lm = np.zeros((4, 4), dtype=np.int64)
    lm[0, 0] = 19
    lm[1, 1] = -3
    with pytest.raises(InputError, match=r"-3, 19"):
        labels.validate_label_map(lm)


def test_unknown_colour_is_rejected_with_its_value():
    rgb = labels.index_to_color(np.zeros((3, 3), dtype=np.uint8))
    rgb[1, 1] = (10, 20, 30)
    with pytest.raises(InputError, match=r"\(10,20,30\)"):
        labels.color_to_index(rgb)


def test_wrong_shapes_are_rejected():
    with pytest.raises(InputError):
        labels.validate_label_map(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(InputError):
        labels.onehot_to_index(np.zeros((18, 4, 4)))
    with pytest.raises(InputError):
        labels.color_to_index(np.zeros((4, 4)))


def test_flip_swaps_left_and_right_classes():
    lm = np.zeros((2, 4), dtype=np.uint8)
    lm[:, 0] = labels.class_index("l_eye")
    flipped = labels.flip_label_map(lm)
    assert np.all(flipped[:, 3] == labels.class_index("r_eye"))
    assert np.array_equal(labels.flip_label_map(flipped), lm)


def test_class_index_accepts_display_names():
    assert labels.class_index("Hair") == 13
    with pytest.raises(InputError, match="unknown class"):
        labels.class_index("moustache")


def test_bisenet_remap_is_a_permutation():
    assert sorted(labels.BISENET_TO_CELEBAMASK.tolist()) == list(range(19))
    # BiSeNet 17 is hair, 10 is nose
    assert labels.BISENET_TO_CELEBAMASK[17] == labels.class_index("hair")
    assert labels.BISENET_TO_CELEBAMASK[10] == labels.class_index("nose")
