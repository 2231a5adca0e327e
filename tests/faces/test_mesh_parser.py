"""The "mesh" parser (FaceMesh + selfie segmentation from the npm package) on the bundled faces:
layout, honest missing classes, and the side convention under horizontal flips."""

import numpy as np
import pytest
from PIL import Image

from idface.faces.parse import parse_frame
from idface.labels import CLASS_INDEX, FLIP_PERMUTATION

FACES = ["astronaut", "grace_hopper", "obama", "obama2", "obama3", "biden"]
SIDED = ["l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear"]


@pytest.fixture(scope="module")
def frames(faces_dir):
    from idface.weights.human_models import human_models_status

    status = human_models_status()
    if status != "available":
        pytest.skip(status)
    train = faces_dir.parent / "train"
    return {name: np.asarray(Image.open(train / f"{name}.png").convert("RGB")) for name in FACES}


@pytest.fixture(scope="module")
def parsed(frames):
    return {name: parse_frame(frame, parser="mesh") for name, frame in frames.items()}


def centroid_x(lm, name):
    xs = np.nonzero(lm == CLASS_INDEX[name])[1]
    return xs.mean() if len(xs) else None


@pytest.mark.parametrize("name", FACES)
def test_mesh_parser_layout(parsed, name):
    result = parsed[name]
    lm = result.label_map
    assert result.method == "mesh" and lm.shape == (256, 256) and lm.dtype == np.uint8
    assert set(result.missing_classes) == {"ear_r", "neck_l"}
    for cls in result.missing_classes:  # never invented
        assert not (lm == CLASS_INDEX[cls]).any()
    for cls in ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "hair",
                "neck", "cloth"]:
        assert (lm == CLASS_INDEX[cls]).sum() > 20, f"{name}: no {cls}"
    # official convention: the subject's left (l_*) lies on the image's right half
    for part in ("eye", "brow"):
        assert centroid_x(lm, f"l_{part}") > 128 > centroid_x(lm, f"r_{part}")
    ys = {c: np.nonzero(lm == CLASS_INDEX[c])[0].mean() for c in ("hair", "l_eye", "nose", "u_lip", "neck", "cloth")}
    assert ys["hair"] < ys["l_eye"] < ys["nose"] < ys["u_lip"] < min(ys["neck"], ys["cloth"])


@pytest.mark.parametrize("name", ["astronaut", "obama2"])
def test_flipped_photo_swaps_sides(frames, parsed, name):
    """Parsing a mirrored photo gives the mirrored map with l_/r_ swapped (labels.FLIP_PERMUTATION):
    the mirror shows a person whose own left is again on the image's right. No sided label (eyes,
    brows, ears) lands on the wrong side in either, and the two maps agree on most pixels."""
    lm = parsed[name].label_map
    flipped = parse_frame(np.ascontiguousarray(frames[name][:, ::-1]), parser="mesh").label_map
    expected = FLIP_PERMUTATION[lm][:, ::-1]
    half = lm.shape[1] / 2
    for cls in SIDED:  # l_* (subject's left) on the image's right, in the photo and in its mirror
        for m in (lm, flipped):
            xs = np.nonzero(m == CLASS_INDEX[cls])[1]
            wrong = (xs < half) if cls.startswith("l_") else (xs >= half)
            assert wrong.sum() <= 0.02 * max(len(xs), 1), f"{cls}: {wrong.sum()} of {len(xs)} pixels on the wrong side"
    assert (flipped == expected).mean() > 0.9


def test_mesh_parser_refuses_a_frame_without_a_face(frames):
    from idface.errors import NoFaceError

    with pytest.raises(NoFaceError, match="no face"):
        parse_frame(np.full((256, 256, 3), 128, np.uint8), parser="mesh")
