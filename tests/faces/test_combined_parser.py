"""The "mesh+landmarks" parser: its coarse classes are the mesh parser's, its face features the
landmark parser's polygons (placed inside the mesh parser's skin), its ears the landmark parser's rule."""

import numpy as np
import pytest
from PIL import Image

from idface.faces.parse import parse_frame
from idface.labels import CLASS_INDEX

FEATURES = [CLASS_INDEX[c] for c in ("l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")]


@pytest.fixture(scope="module")
def frames(faces_dir):
    from idface.weights.human_models import human_models_status

    if human_models_status() != "available":
        pytest.skip(human_models_status())
    train = faces_dir.parent / "train"
    return {name: np.asarray(Image.open(train / f"{name}.png").convert("RGB")) for name in ("obama2", "grace_hopper")}


@pytest.mark.parametrize("name", ["obama2", "grace_hopper"])
def test_features_from_landmarks_coarse_classes_from_mesh(frames, name):
    combined = parse_frame(frames[name], parser="mesh+landmarks")
    mesh = parse_frame(frames[name], parser="mesh").label_map
    landmarks = parse_frame(frames[name], parser="landmarks").label_map
    lm = combined.label_map
    assert combined.method == "mesh+landmarks" and lm.shape == (256, 256)
    assert set(combined.missing_classes) == {"ear_r", "neck_l"}
    assert any("non-commercial" in note for note in combined.notes)  # dlib's 68-point model's licence
    feature = np.isin(lm, FEATURES)
    # every feature pixel is the landmark parser's label there, and most of its feature pixels are kept
    assert feature.sum() > 1000 and (lm[feature] == landmarks[feature]).all()
    landmark_feature = np.isin(landmarks, FEATURES)
    assert (lm[landmark_feature] == landmarks[landmark_feature]).mean() > 0.95
    # away from the features and ears (in both maps) the pixels are the mesh parser's coarse labels
    # (not all of them: without the mesh's ear markers the watershed's borders near the ears move)
    ears = [CLASS_INDEX["l_ear"], CLASS_INDEX["r_ear"]]
    coarse = ~feature & ~np.isin(mesh, FEATURES + ears) & ~np.isin(lm, ears)
    assert (lm[coarse] == mesh[coarse]).mean() > 0.99
    assert (lm == CLASS_INDEX["neck"]).sum() > 200 and (lm == CLASS_INDEX["cloth"]).sum() > 200
    # and the features lie on the mesh parser's face: skin (or its eyeglasses) there, never hair,
    # background or clothes
    assert np.isin(mesh[feature], FEATURES + [CLASS_INDEX["skin"], CLASS_INDEX["eye_g"]]).all()
