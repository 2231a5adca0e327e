"""Alignment: the eyes land where each template says, transforms invert, paste-back restores the
photo, and the differentiable frame -> template warp agrees with aligning the photo directly."""

import numpy as np
import pytest
import torch

from idface.errors import InputError
from idface.faces.align import (
    align_face, apply_affine, frame_to_template, get_template, invert_affine, paste_back, similarity_transform,
)
from idface.faces.detect import detect_faces
from idface.images import load_image

PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


@pytest.fixture(scope="module")
def photos(faces_dir):
    out = {}
    for name in PHOTOS:
        rgb = load_image(faces_dir / name)
        out[name] = (rgb, detect_faces(rgb).chosen)
    return out


def test_similarity_transform_recovers_a_known_transform(rng):
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(apply_affine(invert_affine(m), dst), src, atol=1e-9)
    with pytest.raises(InputError):
        similarity_transform(np.zeros((5, 2)), dst)


def test_generator_template_is_celebahq_like():
    for size in (256, 512):
        t = get_template("generator", size).points / size
        eye_dist = t[1, 0] - t[0, 0]
        assert abs(eye_dist - 0.25) < 0.01  # eyes a quarter of the width apart
        assert 0.44 < t[0, 1] < 0.50 and 0.70 < t[3, 1] < 0.78  # eye line near the middle, mouth lower
        assert abs((t[0, 0] + t[1, 0]) / 2 - 0.5) < 0.01  # centred
    np.testing.assert_allclose(get_template("generator", 512).points + 0.5,
                               2 * (get_template("generator", 256).points + 0.5), atol=1e-9)
    assert get_template("arcface").size == 112 and get_template("dlib").size == 150
    with pytest.raises(InputError, match="unknown alignment template"):
        get_template("vggface")


@pytest.mark.parametrize("template,size", [("generator", 256), ("generator", 512), ("arcface", None), ("dlib", None)])
def test_eyes_land_on_the_template(photos, template, size):
    """A 5-point least-squares fit leaves each eye a few pixels off when the pose departs from the
    mean face: every eye within 10 % of the template's eye distance (6 px at 256), typically 5 %."""
    tpl = get_template(template, size)
    eye_dist = np.linalg.norm(tpl.points[1] - tpl.points[0])
    errors = []
    for name, (rgb, face) in photos.items():
        crop, tf = align_face(rgb, face.landmarks, template, size, dlib5=face.dlib5)
        assert crop.shape == (tpl.size, tpl.size, 3) and crop.dtype == np.uint8
        err = np.linalg.norm(tf.to_crop(face.landmarks[:2]) - tpl.points[:2], axis=1)
        assert err.max() < 0.10 * eye_dist, f"{name}: eyes {err.max():.1f} px from the {template} template"
        errors.extend(err)
    assert np.median(errors) < 0.05 * eye_dist


def test_eyes_found_again_on_the_aligned_crop(photos):
    """Independent check: detect the face again on the 256 generator-frame crop."""
    tpl = get_template("generator", 256)
    for name, (rgb, face) in photos.items():
        crop, _ = align_face(rgb, face.landmarks, "generator", 256, dlib5=face.dlib5)
        again = detect_faces(crop, min_face_size=0).chosen
        err = np.linalg.norm(again.landmarks[:2] - tpl.points[:2], axis=1).max()
        assert err < 6.4, f"{name}: eyes re-detected {err:.1f} px from the template"


def test_paste_back_restores_the_photo(photos):
    rgb, face = photos["obama.jpg"]
    crop, tf = align_face(rgb, face.landmarks, "generator", 512, dlib5=face.dlib5)
    restored = paste_back(rgb, crop, tf)
    x0, y0, x1, y1 = face.box.astype(int)
    diff = np.abs(restored[y0:y1, x0:x1].astype(int) - rgb[y0:y1, x0:x1].astype(int))
    assert diff.mean() < 4.0
    # an edit shows up inside the face and nowhere far from it
    edited = paste_back(rgb, np.zeros_like(crop), tf)
    assert edited[y0:y1, x0:x1].mean() < 20
    assert np.array_equal(edited[:5, :5], rgb[:5, :5])


@pytest.mark.parametrize("template", ["arcface", "dlib"])
def test_frame_to_template_matches_direct_alignment_and_is_differentiable(photos, template):
    rgb, face = photos["grace_hopper.jpg"]
    frame, _ = align_face(rgb, face.landmarks, "generator", 512, dlib5=face.dlib5)
    direct, _ = align_face(rgb, face.landmarks, template, dlib5=face.dlib5)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    warped = frame_to_template(x, template)
    assert warped.shape[-2:] == direct.shape[:2]
    got = warped[0].permute(1, 2, 0).detach().numpy() * 255
    inner = slice(10, direct.shape[0] - 10)
    assert np.abs(got[inner, inner] - direct[inner, inner]).mean() < 8.0
    warped.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_align_rejects_bad_landmarks(photos):
    rgb, _ = photos["obama.jpg"]
    with pytest.raises(InputError, match=r"\[5, 2\] landmarks"):
        align_face(rgb, np.zeros((68, 2)))
