"""Generator modes (swap, token optimisation) on a tiny PLUMBING checkpoint made in a temp folder:
random weights, so these tests check the mechanics (the right faces and embeddings go in, the
report's numbers are what dlib itself says about the saved image, the budget holds, the loop stops
when the goal is already reached), not that a random generator can fool a recognizer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from idface.conceal import conceal
from idface.metrics import psnr
from idface.errors import InputError, UnavailableError
from idface.faces import prepare_face
from idface.faces.align import frame_to_template_matrix

pytestmark = pytest.mark.slow


def dlib_descriptor_of_frame(judge, frame: np.ndarray) -> np.ndarray:
    """dlib's own network on the dlib chip cut from a generator-frame image with OpenCV."""
    size = frame.shape[0]
    matrix = frame_to_template_matrix(size, "dlib", 150)
    chip = cv2.warpAffine(np.ascontiguousarray(frame), matrix, (150, 150), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return np.array(judge.net.compute_face_descriptor(chip), dtype=np.float64)


@pytest.fixture(scope="module")
def frames(faces_dir):
    return (prepare_face(faces_dir / "astronaut.png", parse=False).image,
            prepare_face(faces_dir / "grace_hopper.jpg", parse=False).image)


def check_numbers(judge, result, frames):
    rep = result.report
    entry = rep["recognizers"]["dlib-resnet"]
    d_out = dlib_descriptor_of_frame(judge, result.image)
    d_a, d_b = (dlib_descriptor_of_frame(judge, f) for f in frames)
    assert entry["distance_to_source"] == pytest.approx(np.linalg.norm(d_out - d_a), abs=0.03)
    assert entry["distance_to_target"] == pytest.approx(np.linalg.norm(d_out - d_b), abs=0.03)
    assert entry["same_as_target"] == bool(entry["distance_to_target"] < 0.6)
    expected_psnr = psnr(result.original, result.image)
    assert (rep["psnr"] is None and np.isinf(expected_psnr)) or rep["psnr"] == pytest.approx(expected_psnr, abs=1e-3)


def test_swap_puts_the_targets_embedding_in_the_token(plumbing_pipeline, faces_dir, judge, frames):
    cv2.setRNGSeed(0)  # the offline parser's GrabCut draws from OpenCV's RNG
    result = conceal(faces_dir / "astronaut.png", faces_dir / "grace_hopper.jpg", goal="impersonate",
                     mode="swap", pipeline=plumbing_pipeline)
    rep = result.report
    json.dumps(rep)
    assert rep["mode"] == "swap" and rep["steps"] == 1
    size = plumbing_pipeline.image_size
    assert result.image.shape == (size, size, 3)
    # the swap is exactly one pipeline pass with B's dlib embedding (as the app computes it)
    from idface.identity.registry import get_recognizer
    from idface.conceal.generator_modes import frame_embedding

    rec = get_recognizer("dlib-resnet")
    cv2.setRNGSeed(0)
    face_a = prepare_face(faces_dir / "astronaut.png")
    expected = plumbing_pipeline(face_a.label_map, style=(face_a.image, face_a.label_map),
                                 identity_embedding=frame_embedding(rec, frames[1]), attention=False).image
    assert np.array_equal(expected, result.image)
    assert not np.array_equal(result.original, result.image)  # the token changed the output
    check_numbers(judge, result, frames)


def test_token_optimisation_respects_budget_and_reports_true_numbers(plumbing_pipeline, faces_dir, judge, frames):
    settings = {"steps": 3, "samples": 1, "check_every": 3, "min_psnr": 30.0, "min_ssim": 0.9}
    result = conceal(faces_dir / "astronaut.png", faces_dir / "grace_hopper.jpg", goal="impersonate",
                     mode="token", regions="hair", pipeline=plumbing_pipeline, settings=settings)
    rep = result.report
    assert rep["steps"] == 3 and len(result.history) == 3
    assert rep["optimised_class_codes"] == ["hair"]
    assert psnr(result.original, result.image) >= 30.0
    assert rep["ssim_luma"] >= 0.9
    check_numbers(judge, result, frames)


def test_token_mode_stops_at_once_when_the_goal_already_holds(plumbing_pipeline, faces_dir):
    # a random generator's face is nobody: dlib already does not read the astronaut in it
    result = conceal(faces_dir / "astronaut.png", None, goal="dodge", mode="token", pipeline=plumbing_pipeline,
                     settings={"steps": 5})
    rep = result.report
    assert rep["recognizers"]["dlib-resnet"]["unattacked"]["success"]
    assert rep["stopped"] == "goal already reached" and rep["steps"] == 0
    assert np.array_equal(result.image, result.original)


def test_generator_modes_explain_what_is_missing(faces_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("IDFACE_CHECKPOINT", str(tmp_path / "nowhere"))
    with pytest.raises(UnavailableError, match="checkpoint"):
        conceal(faces_dir / "astronaut.png", faces_dir / "biden.jpg", mode="swap")
    with pytest.raises(InputError, match="target"):
        conceal(faces_dir / "astronaut.png", None, goal="impersonate", mode="token")


def test_token_optimisation_leaves_the_shared_model_untouched(plumbing_pipeline, faces_dir):
    import torch

    model = plumbing_pipeline.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    conceal(faces_dir / "astronaut.png", faces_dir / "grace_hopper.jpg", mode="token", pipeline=plumbing_pipeline,
            settings={"steps": 1, "samples": 1, "check_every": 1})
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
