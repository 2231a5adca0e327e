"""Parsing into the 19 CelebAMask-HQ classes: the landmark parser on real photos, the facexlib
BiSeNet label remap, the registry's choice ("auto": network, else mesh, else landmarks) and its
honest reports, and the side convention of every offline parser under a horizontal flip."""

import numpy as np
import pytest
import torch

from idface.errors import InputError, UnavailableError
from idface.faces import prepare_face
from idface.faces.align import get_template
from idface.faces.parse import (
    LANDMARK_PARSER_CANNOT_PRODUCE, NetworkParser, init_parsing_model, parse_frame,
)
from idface.labels import BISENET_TO_CELEBAMASK, CLASS_INDEX, CLASS_NAMES

PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
BISENET_ORDER = ["background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                 "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]


@pytest.fixture(scope="module")
def parsed(faces_dir):
    return {name: prepare_face(faces_dir / name, parser="landmarks") for name in PHOTOS}


def centroid(lm, name):
    ys, xs = np.nonzero(lm == CLASS_INDEX[name])
    return np.array([xs.mean(), ys.mean()]) if len(xs) else None


@pytest.mark.parametrize("name", PHOTOS)
def test_landmark_parser_layout_on_real_photos(parsed, name):
    face = parsed[name]
    lm = face.label_map
    assert lm.shape == (256, 256) and lm.dtype == np.uint8 and lm.max() < 19
    assert face.parse_method == "landmarks"
    for cls in ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "hair"]:
        assert (lm == CLASS_INDEX[cls]).sum() > 20, f"{name}: no {cls}"
    for cls in LANDMARK_PARSER_CANNOT_PRODUCE:  # never invented
        assert not (lm == CLASS_INDEX[cls]).any()
    tpl = get_template("generator", 256).points
    left_eye, right_eye = centroid(lm, "l_eye"), centroid(lm, "r_eye")
    # CelebAMask-HQ: l_* is the subject's left = the image's RIGHT (template point 1)
    assert np.linalg.norm(left_eye - tpl[1]) < 8 and np.linalg.norm(right_eye - tpl[0]) < 8
    assert centroid(lm, "l_brow")[1] < left_eye[1] and centroid(lm, "l_brow")[0] > centroid(lm, "r_brow")[0]
    nose, upper, lower = centroid(lm, "nose"), centroid(lm, "u_lip"), centroid(lm, "l_lip")
    assert left_eye[1] < nose[1] < upper[1] < lower[1]
    skin = lm == CLASS_INDEX["skin"]
    assert skin.sum() > 0.12 * lm.size  # the face is the largest part of the frame
    assert centroid(lm, "hair")[1] < centroid(lm, "skin")[1]  # hair sits above the face's centre


def test_missing_classes_are_reported(parsed):
    face = parsed["obama.jpg"]
    assert set(face.missing_classes) == {"eye_g", "hat", "ear_r", "neck_l"}


def test_parse_at_512_and_in_photo_pixels(faces_dir):
    from idface.faces.parse import parse_photo
    from idface.images import load_image

    result, aligned = parse_photo(faces_dir / "grace_hopper.jpg", size=512, parser="landmarks")
    assert result.label_map.shape == (512, 512) and aligned.image.shape == (512, 512, 3)
    back, _ = parse_photo(faces_dir / "grace_hopper.jpg", photo_frame=True, parser="landmarks")
    photo = load_image(faces_dir / "grace_hopper.jpg")
    assert back.label_map.shape == photo.shape[:2]
    # the face's skin lands on the face box of the photo
    box = aligned.face.box.astype(int)
    inside = back.label_map[box[1]:box[3], box[0]:box[2]]
    assert (inside == CLASS_INDEX["skin"]).mean() > 0.4


def test_bisenet_remap_table_matches_the_class_names():
    assert len(BISENET_TO_CELEBAMASK) == len(BISENET_ORDER) == 19
    for bisenet_index, name in enumerate(BISENET_ORDER):
        assert CLASS_NAMES[BISENET_TO_CELEBAMASK[bisenet_index]] == name


class _FixedLogits(torch.nn.Module):
    """Stands in for BiSeNet's forward: class i (BiSeNet order) in the i-th horizontal stripe."""

    def forward(self, x):
        b, _, h, w = x.shape
        stripe = (torch.arange(h) * 19 // h).view(1, 1, h, 1).expand(b, 1, h, w)
        logits = torch.zeros(b, 19, h, w).scatter_(1, stripe, 1.0)
        return logits, logits, logits


def test_bisenet_parser_is_chosen_when_its_weights_are_local_and_remaps(monkeypatch, tmp_path):
    from facexlib.parsing.bisenet import BiSeNet

    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    torch.save(BiSeNet(num_class=19).state_dict(), tmp_path / "parsing_bisenet.pth")
    init_parsing_model.cache_clear()
    try:
        parser = init_parsing_model("auto")
        assert isinstance(parser, NetworkParser) and parser.name == "bisenet"
        random_out = parse_frame(np.full((512, 512, 3), 128, np.uint8)).label_map  # real (random) network runs
        assert random_out.shape == (512, 512) and random_out.max() < 19
        parser.model = _FixedLogits()
        result = parse_frame(np.zeros((512, 512, 3), np.uint8))
        rows = result.label_map[:, 0]
        stripes = [int(rows[int((i + 0.5) * 512 / 19)]) for i in range(19)]
        assert stripes == [int(v) for v in BISENET_TO_CELEBAMASK]
        assert result.method == "bisenet" and result.missing_classes == ()
    finally:
        init_parsing_model.cache_clear()


def test_registry_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    init_parsing_model.cache_clear()
    with pytest.raises(UnavailableError, match="parsing_parsenet.pth not found"):
        init_parsing_model("parsenet")
    with pytest.raises(InputError, match="unknown parser"):
        init_parsing_model("segformer")
    with pytest.raises(InputError, match="square RGB uint8"):
        parse_frame(np.zeros((100, 200, 3), np.uint8))
    init_parsing_model.cache_clear()


def test_auto_prefers_mesh_landmarks_when_the_npm_graphs_are_present_else_landmarks(monkeypatch, tmp_path, faces_dir):
    from idface.weights import dlib_model_file
    from idface.weights.human_models import human_models_status

    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))  # no facexlib network
    init_parsing_model.cache_clear()
    try:
        if human_models_status() == "available":
            try:
                dlib_model_file("shape_predictor_68_face_landmarks.dat")
                expected = "mesh+landmarks"
            except UnavailableError:
                expected = "mesh"
            face = prepare_face(faces_dir / "obama.jpg")
            assert face.parse_method == expected and set(face.missing_classes) == {"ear_r", "neck_l"}
        monkeypatch.setenv("IDFACE_HUMAN_MODELS_DIR", str(tmp_path / "none"))
        init_parsing_model.cache_clear()
        assert init_parsing_model("auto").name == "landmarks"
    finally:
        init_parsing_model.cache_clear()


def test_auto_falls_back_to_landmarks_where_facemesh_sees_no_face(monkeypatch, tmp_path):
    """A frame FaceMesh refuses (score < 0.5) is parsed by the landmark parser under "auto", and
    the notes say so; asked for by name, the mesh parser refuses with a one-line NoFaceError."""
    from idface.errors import NoFaceError
    from idface.weights.human_models import human_models_status

    if human_models_status() != "available":
        pytest.skip(human_models_status())
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path))
    init_parsing_model.cache_clear()
    try:
        flat = np.full((512, 512, 3), 128, np.uint8)
        with pytest.raises(NoFaceError, match="no face"):
            parse_frame(flat, parser="mesh")
        with pytest.raises(NoFaceError, match="no face"):
            parse_frame(flat, parser="mesh+landmarks")
        result = parse_frame(flat, parser="auto")
        assert result.method == "landmarks" and " parser refused (" in result.notes[0]
    finally:
        init_parsing_model.cache_clear()


SIDED = ["l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear"]


@pytest.mark.parametrize("parser", ["landmarks", "mesh", "mesh+landmarks"])
@pytest.mark.parametrize("name", ["astronaut.png", "obama2.jpg", "biden.jpg"])
def test_no_sided_label_leaks_across_a_flip(faces_dir, parser, name):
    """Official convention: l_* is the subject's own left = the image's RIGHT. A mirrored photo
    shows a person whose own left is again on the image's right, so its map must be the mirrored
    map with every l_/r_ pair swapped (labels.FLIP_PERMUTATION). Checked on the 512 frame of the
    photo and of its mirror (the generator template is symmetric, so mirroring the frame is
    mirroring the photo): every sided class on its own side in both, and the two maps agree."""
    from idface.labels import FLIP_PERMUTATION
    from idface.weights.human_models import human_models_status

    if parser.startswith("mesh") and human_models_status() != "available":
        pytest.skip(human_models_status())
    frame = prepare_face(faces_dir / name, 512, parse=False).image
    tpl = get_template("generator", 512).points
    assert abs((tpl[0, 0] + tpl[1, 0]) / 2 - 256) < 1  # the frame is symmetric about its centre
    lm = parse_frame(frame, parser=parser).label_map
    mirrored = parse_frame(np.ascontiguousarray(frame[:, ::-1]), parser=parser).label_map
    for m in (lm, mirrored):
        for cls in SIDED:
            xs = np.nonzero(m == CLASS_INDEX[cls])[1]
            wrong = (xs < 256) if cls.startswith("l_") else (xs >= 256)
            assert wrong.sum() <= 0.02 * max(len(xs), 1), f"{parser} {name} {cls}: {wrong.sum()} of {len(xs)} px on the wrong side"
    expected = FLIP_PERMUTATION[lm][:, ::-1]
    assert (mirrored == expected).mean() > 0.9  # (not 1.0: a half-hidden ear may be found on one side only)
