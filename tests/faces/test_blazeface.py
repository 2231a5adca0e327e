"""BlazeFace (npm package) as a detector: it finds the bundled faces where dlib's HOG does, and a
face rolled 60 degrees that HOG misses; dlib's five points land on the same eyes either way."""

import cv2
import numpy as np
import pytest

from idface.errors import NoFaceError
from idface.faces.blazeface import anchor_centres
from idface.faces.detect import detect_faces
from idface.images import load_image


@pytest.fixture(scope="module")
def obama(faces_dir):
    from idface.weights.human_models import human_models_status

    status = human_models_status()
    if status != "available":
        pytest.skip(status)
    rgb = load_image(faces_dir / "obama.jpg")
    return rgb, detect_faces(rgb, "dlib_hog").chosen.landmarks


def test_anchor_grid_matches_the_graph_outputs():
    anchors = anchor_centres(256)
    assert anchors.shape == (16 * 16 * 2 + 8 * 8 * 6, 2)
    assert np.allclose(anchors[0], [8, 8]) and np.allclose(anchors[1], [8, 8]) and np.allclose(anchors[-1], [240, 240])


def eye_error(found, expected):
    return float(np.abs(found[:2] - expected[:2]).max() / np.linalg.norm(expected[0] - expected[1]))


def test_blazeface_finds_the_upright_face_like_hog(obama):
    rgb, hog = obama
    det = detect_faces(rgb, "blazeface")
    assert det.detector == "blazeface" and det.count == 1
    assert eye_error(det.chosen.landmarks, hog) < 0.05
    assert det.chosen.dlib5 is not None  # dlib's own points: the dlib chip is unchanged


def test_blazeface_finds_a_rolled_face_that_hog_misses(obama):
    rgb, hog = obama
    h, w = rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 60, 1.0)
    rolled = cv2.warpAffine(rgb, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    with pytest.raises(NoFaceError):
        detect_faces(rolled, "dlib_hog")
    det = detect_faces(rolled, "blazeface")
    assert det.detector == "blazeface"
    assert eye_error(det.chosen.landmarks, hog @ rot[:, :2].T + rot[:, 2]) < 0.05


def test_auto_tries_blazeface_when_hog_finds_nothing(obama):
    """auto: dlib HOG first (the frame of every face it finds is unchanged), BlazeFace when HOG
    finds nothing; the detection says which one found the face."""
    rgb, hog = obama
    assert detect_faces(rgb, "auto").detector == "dlib_hog"
    h, w = rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 60, 1.0)
    rolled = cv2.warpAffine(rgb, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    det = detect_faces(rolled, "auto")
    assert det.detector == "blazeface" and det.chosen.detector == "blazeface"
    assert eye_error(det.chosen.landmarks, hog @ rot[:, :2].T + rot[:, 2]) < 0.05
