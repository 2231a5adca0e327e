"""The registry says what runs here and why the rest does not; dlib-resnet judges real pairs right."""

import itertools

import numpy as np
import pytest
import torch

from idface.errors import InputError, UnavailableError
from idface.identity.registry import RECOGNIZER_NAMES, available_recognizers, get_recognizer, recognizer_status


@pytest.fixture(scope="module")
def dlib_rec():
    return get_recognizer("dlib-resnet")


@pytest.fixture(scope="module")
def embeddings(dlib_rec, faces_dir):
    names = {"obama": "obama.jpg", "obama2": "obama2.jpg", "obama3": "obama3.jpg", "biden": "biden.jpg",
             "astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}
    return {k: dlib_rec.embed_photo(faces_dir / v)[0] for k, v in names.items()}


def test_status_names_every_recognizer_with_a_reason(monkeypatch, tmp_path):
    from idface.weights import ARCFACE_FILE as WEIGHTS_FILE, facexlib_weight_path

    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    if facexlib_weight_path(WEIGHTS_FILE) is not None:
        pytest.skip("real ArcFace weights are installed in weights/facexlib")
    status = recognizer_status()
    assert set(status) == set(RECOGNIZER_NAMES)
    assert status["dlib-resnet"] == "available"
    # offline, with no ArcFace file anywhere: unavailable, saying what was tried
    assert "recognition_arcface_ir_se50.pth not found" in status["arcface"]
    assert "HF cache" in status["arcface"] and "github.com" in status["arcface"]
    assert "arcface" not in available_recognizers() and "dlib-resnet" in available_recognizers()


def test_get_recognizer_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    with pytest.raises(InputError, match="unknown recognizer"):
        get_recognizer("facenet")
    with pytest.raises(UnavailableError, match="arcface unavailable"):
        get_recognizer("arcface")


def test_dlib_recognizer_fields(dlib_rec):
    assert dlib_rec.name == "dlib-resnet" and dlib_rec.backend == "torch"
    assert (dlib_rec.input_size, dlib_rec.embedding_dim, dlib_rec.template) == (150, 128, "dlib")
    assert dlib_rec.threshold == 0.6 and not dlib_rec.higher_is_more_similar
    assert "0.6" in dlib_rec.threshold_source
    assert get_recognizer("dlib-resnet") is dlib_rec  # loaded once


def test_three_photos_of_one_person_are_the_same_person(dlib_rec, embeddings):
    for a, b in itertools.combinations(["obama", "obama2", "obama3"], 2):
        d = dlib_rec.score(embeddings[a], embeddings[b])
        assert dlib_rec.is_same(d), f"{a} vs {b}: distance {d:.3f}"
        assert d < 0.5


def test_different_people_are_different(dlib_rec, embeddings):
    for other in ["obama", "obama2", "obama3"]:
        d = dlib_rec.score(embeddings[other], embeddings["biden"])
        assert not dlib_rec.is_same(d) and d > 0.7, f"{other} vs biden: {d:.3f}"
    assert not dlib_rec.is_same(dlib_rec.score(embeddings["astronaut"], embeddings["grace_hopper"]))


def test_photo_descriptor_matches_dlib_itself(dlib_rec, faces_dir):
    """The photo pipeline gives the descriptor dlib's own compute_face_descriptor gives."""
    import dlib

    from idface.faces import locate_face
    from idface.weights import dlib_model_file
    from idface.identity.dlib_recognizer import dlib_face_chip

    rgb, det = locate_face(faces_dir / "grace_hopper.jpg")
    chip = dlib_face_chip(rgb, det.chosen.dlib5, det.chosen.box)
    ref = np.array(dlib.face_recognition_model_v1(
        str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat"))).compute_face_descriptor(chip))
    ours, _ = dlib_rec.embed_photo(rgb)
    assert np.abs(ours - ref).max() < 1e-3


def test_own_dlib_template_and_frame_path_agree_with_dlib_chip(dlib_rec, faces_dir):
    """idface's own dlib-template crop and the generator-frame warp give nearly dlib's descriptor."""
    from idface.faces import prepare_face
    from idface.faces.align import align_face
    from idface.faces import locate_face

    for name in ["obama.jpg", "biden.jpg"]:
        rgb, det = locate_face(faces_dir / name)
        ref, _ = dlib_rec.embed_photo(rgb)
        chip, _ = align_face(rgb, det.chosen.landmarks, "dlib", dlib5=det.chosen.dlib5)
        assert dlib_rec.score(dlib_rec.embed_chip_uint8(chip), ref) < 0.08  # 0.058 / 0.044 measured
        frame = prepare_face(rgb, parse=False).image
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255)
        assert dlib_rec.score(dlib_rec.embed_frame(x)[0].numpy(), ref) < 0.09  # 0.062 / 0.044 measured


def test_scores_on_tensors_are_differentiable(dlib_rec):
    x = torch.rand(2, 3, 150, 150, requires_grad=True)
    e = dlib_rec.embed_aligned(x)
    assert e.shape == (2, 128)
    d = dlib_rec.score(e[0], e[1])
    d.backward()
    assert x.grad.abs().sum() > 0
    assert isinstance(dlib_rec.is_same(d.detach()), torch.Tensor)
    with pytest.raises(InputError, match="150x150"):
        dlib_rec.embed_aligned(torch.rand(1, 3, 112, 112))
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        dlib_rec.embed_frame(torch.rand(3, 256, 256))
