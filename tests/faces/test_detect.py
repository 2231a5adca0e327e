"""Detection on real photos: one face per bundled photo, the best-scoring face chosen among several,
faces too small refused, huge photos downscaled, landmarks in the photo's own pixels."""

import cv2
import numpy as np
import pytest

from idface.errors import NoFaceError
from idface.faces.detect import MIN_FACE_SIZE, detect_faces, init_detection_model
from idface.images import load_image

PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


@pytest.fixture(scope="module")
def obama(faces_dir):
    return load_image(faces_dir / "obama.jpg")


@pytest.mark.parametrize("name", PHOTOS)
def test_one_face_per_bundled_photo(faces_dir, name):
    rgb = load_image(faces_dir / name)
    det = detect_faces(rgb)
    assert det.count == 1, det.message
    face = det.chosen
    x0, y0, x1, y1 = face.box
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert left_eye[0] < right_eye[0]  # image-left eye first
    for p in face.landmarks:  # every landmark inside (or at the edge of) the face box
        assert x0 - 0.1 * face.size <= p[0] <= x1 + 0.1 * face.size
        assert y0 - 0.1 * face.size <= p[1] <= y1 + 0.2 * face.size
    assert face.landmarks[2][1] > left_eye[1] and face.landmarks[3][1] > face.landmarks[2][1]  # eyes, nose, mouth


def test_astronaut_mission_patch_is_not_a_face(faces_dir):
    det = detect_faces(load_image(faces_dir / "astronaut.png"))
    assert det.count == 1
    assert det.chosen.box[3] < 250  # the face, not the patch on her chest (y ~ 335..425)


def test_many_faces_best_scoring_chosen_and_counted(faces_dir, obama):
    biden = load_image(faces_dir / "biden.jpg")
    h = 600
    a = cv2.resize(obama, (round(obama.shape[1] * h / obama.shape[0]), h), interpolation=cv2.INTER_AREA)
    b = cv2.resize(biden, (round(biden.shape[1] * h / biden.shape[0]), h), interpolation=cv2.INTER_AREA)
    group = np.concatenate([a, b], axis=1)
    det = detect_faces(group)
    assert det.count == 2
    assert det.chosen.score == max(f.score for f in det.faces)
    assert "2 faces found; used the best-scoring one" in det.message
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in det.faces)
    assert centres[0] < a.shape[1] < centres[1]  # one face in each half


def test_no_face(rng):
    noise = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        detect_faces(noise)


def test_face_too_small_is_refused_with_sizes(obama):
    det = detect_faces(obama)
    factor = 40 / det.chosen.size
    small = cv2.resize(obama, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[: min(400, small.shape[0]), : min(400, small.shape[1])] = small[:400, :400]
    with pytest.raises(NoFaceError, match=rf"too small to use: \d+ px wide, at least {MIN_FACE_SIZE} px"):
        detect_faces(canvas)


def test_huge_photo_downscaled_for_detection_landmarks_in_photo_pixels(obama):
    base = detect_faces(obama).chosen
    factor = 5.0  # 4550 x 5685 = 26 MP
    huge = cv2.resize(obama, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    det = detect_faces(huge)
    assert det.detect_scale < 0.25 and "downscaled" in det.message
    expected = (base.landmarks + 0.5) * factor - 0.5
    err = np.linalg.norm(det.chosen.landmarks[:2] - expected[:2], axis=1)  # eye centres
    assert err.max() < 0.05 * np.linalg.norm(expected[0] - expected[1])


def test_unknown_detector_and_missing_retinaface_weights(monkeypatch, tmp_path):
    from idface.errors import InputError, UnavailableError

    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    with pytest.raises(InputError, match="unknown detector"):
        init_detection_model("yolo")
    with pytest.raises(UnavailableError, match="detection_Resnet50_Final.pth not found"):
        init_detection_model("retinaface_resnet50")


def test_retinaface_is_used_when_its_weights_are_local(monkeypatch, tmp_path, faces_dir):
    """Plumbing of the facexlib path: a RetinaFace file in facexlib's model_rootpath is picked by
    "auto", built on the CPU and run (random weights here: whatever it finds must be well formed)."""
    import torch
    from facexlib.detection.retinaface import RetinaFace

    from idface.faces.detect import RetinaFaceDetector

    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    torch.manual_seed(0)
    state = RetinaFace(network_name="mobile0.25", device=torch.device("cpu")).state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "detection_mobilenet0.25_Final.pth")
    init_detection_model.cache_clear()
    try:
        model = init_detection_model("auto")
        assert isinstance(model, RetinaFaceDetector) and model.name == "retinaface_mobile0.25"
        faces = model.detect(load_image(faces_dir / "astronaut.png"))
        for f in faces:
            assert f.box.shape == (4,) and f.landmarks.shape == (5, 2) and 0.8 < f.score <= 1.0
    finally:
        init_detection_model.cache_clear()
