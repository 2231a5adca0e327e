"""Eyeglasses and hats (idface.faces.accessories) in the offline mesh parsers: painted where a
frame or a brim is, and nowhere on the bundled photos without them."""

import json

import cv2
import numpy as np
import pytest

from idface.faces.parse import parse_frame
from idface.images import load_image
from idface.labels import CLASS_INDEX

EYE_G, HAT = CLASS_INDEX["eye_g"], CLASS_INDEX["hat"]
BARE = ["astronaut.png", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]  # no eyeglasses, no hat


@pytest.fixture(scope="module")
def frames(faces_dir):
    """The six bundled photos in the 512 frame of assets/reference (the matrices bench_parser uses)."""
    from idface.weights.human_models import human_models_status

    if human_models_status() != "available":
        pytest.skip(human_models_status())
    matrices = json.loads((faces_dir.parent / "reference" / "frames.json").read_text())
    out = {}
    for name in BARE + ["grace_hopper.jpg"]:
        rgb = load_image(faces_dir / name)
        m = np.asarray(matrices[name.split(".")[0]]["photo_to_frame"], np.float64)
        out[name] = cv2.warpAffine(rgb, m, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out


def rows_of(lm, cls):
    return np.nonzero(lm == CLASS_INDEX[cls])[0]


@pytest.mark.parametrize("parser", ["mesh", "mesh+landmarks"])
@pytest.mark.parametrize("name", BARE)
def test_no_eyeglasses_or_hat_on_a_bare_head(frames, parser, name):
    lm = parse_frame(frames[name], parser=parser).label_map
    assert not (lm == EYE_G).any(), f"{parser} {name}: eyeglasses invented"
    assert not (lm == HAT).any(), f"{parser} {name}: hat invented"


@pytest.mark.parametrize("parser", ["mesh", "mesh+landmarks"])
@pytest.mark.parametrize("mirror", [False, True])
def test_grace_hoppers_eyeglasses_and_hat_where_they_are(frames, parser, mirror):
    frame = frames["grace_hopper.jpg"]
    if mirror:
        frame = np.ascontiguousarray(frame[:, ::-1])
    lm = parse_frame(frame, parser=parser).label_map
    glasses, hat = lm == EYE_G, lm == HAT
    assert glasses.sum() > 5000 and hat.sum() > 20000
    eyes_y = rows_of(lm, "l_eye").mean(), rows_of(lm, "r_eye").mean()
    brows_top = min(rows_of(lm, "l_brow").min(), rows_of(lm, "r_brow").min())
    ys, xs = np.nonzero(glasses)
    # round both eyes, from above the eyes to above the mouth, on both halves of the face
    assert ys.min() > brows_top - 10 and ys.max() < rows_of(lm, "u_lip").min()
    assert (xs < 256).mean() > 0.3 and (xs >= 256).mean() > 0.3
    assert all(ys.min() < y < ys.max() for y in eyes_y)
    # the eyes themselves and the brows stay on top of the glasses; the nose keeps its tip
    for cls in ("l_eye", "r_eye", "l_brow", "r_brow"):
        assert (lm == CLASS_INDEX[cls]).sum() > 200
    assert rows_of(lm, "nose").max() > ys.max()
    # the hat is above the brows, and there is still hair (below the brim, beside the face)
    assert np.nonzero(hat)[0].max() < brows_top
    assert (lm == CLASS_INDEX["hair"]).sum() > 1000


def test_eyeglasses_follow_drawn_frames(frames):
    """Dark frames drawn round the eyes of a bare face become eye_g, inside the drawn outline.
    (Lenses 0.5 eye distances wide each side of the pupil, about grace_hopper's; the outer rim is
    looked for 0.45-0.95 eye distances out, so much smaller lenses get a wider eye_g.)"""
    from idface.faces.parse import init_parsing_model

    frame = frames["obama2.jpg"].copy()
    lm = parse_frame(frame, parser="mesh+landmarks").label_map
    assert not (lm == EYE_G).any()
    p = init_parsing_model("landmarks").landmarks68(frame)  # [68, 2]
    drawn = np.zeros(frame.shape[:2], np.uint8)
    centres = p[36:42].mean(0), p[42:48].mean(0)
    eye_dist = float(np.linalg.norm(centres[1] - centres[0]))
    axes = (int(0.5 * eye_dist), int(0.3 * eye_dist))
    for c in centres:
        cv2.ellipse(drawn, (int(c[0]), int(c[1] + 0.08 * eye_dist)), axes, 0, 0, 360, 1, 5)  # a 5 px rim
    inner = int(centres[0][0] + axes[0]), int(centres[1][0] - axes[0])
    cv2.line(drawn, (inner[0], int(centres[0][1] - 0.1 * eye_dist)), (inner[1], int(centres[1][1] - 0.1 * eye_dist)), 1, 5)
    framed = frame.copy()
    framed[drawn.astype(bool)] = (20, 20, 20)
    glasses = parse_frame(framed, parser="mesh+landmarks").label_map == EYE_G
    assert glasses.sum() > 3000
    lenses = drawn.copy()
    for c in centres:  # the drawn rings filled: frame and lenses
        cv2.ellipse(lenses, (int(c[0]), int(c[1] + 0.08 * eye_dist)), axes, 0, 0, 360, 1, -1)
    lenses = lenses.astype(bool)
    # the painted shape is a rounded box per lens joined at the bridge, not a copy of the drawing:
    # nearly all of it within 0.15 eye distances of the drawing, and most of the drawing covered
    near = cv2.dilate(lenses.astype(np.uint8), np.ones((int(0.3 * eye_dist),) * 2, np.uint8)).astype(bool)
    assert glasses[~near].sum() < 0.05 * glasses.sum()
    assert glasses[lenses].sum() > 0.6 * lenses.sum()
    assert (glasses & ~lenses).sum() < 0.5 * glasses.sum()
