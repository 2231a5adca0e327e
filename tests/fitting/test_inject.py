"""Practising an identity face's token after fitting (idface.fitting.inject): the recognizer moves
towards that person, the given weights stay untouched, the photo's own token still reconstructs it,
and a session keeps a bounded number of practised identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from idface.fitting import FittedFace, WeightDelta
from idface.fitting.fit import embed, face_region, resize_image, resize_labels
from idface.fitting.inject import InjectConfig, practise_identity, reads_as
from idface.images import load_image
from idface.pipeline import IdFacePipeline

from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "assets" / "train"


@pytest.fixture(scope="module")
def other_embedding(dlib_port) -> np.ndarray:
    return embed(dlib_port, load_image(TRAIN / "obama.png")).numpy()


@pytest.fixture(scope="module")
def practised(tiny_base, aligned_face, dlib_port, face_embedding, other_embedding):
    _, model = tiny_base
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = practise_identity(model, dlib_port, *aligned_face, face_embedding, other_embedding,
                               InjectConfig(steps=24, max_seconds=None, stop_margin=10.0))   # never stops early
    return result, before


def test_practice_moves_the_recognizer_towards_the_identity_face(practised):
    result, _ = practised
    assert result.steps == 24 and len(result.history) == 13          # a check before every token step, and at the end
    assert result.score_to_identity < result.score_to_identity_before - 0.01   # dlib port: distance to B fell
    assert not result.reads_as_identity                                       # (stop margin 10: never read)
    summary = result.summary()
    assert summary["distance_to_identity"] < summary["distance_to_identity_before"]


def test_practice_leaves_the_given_weights_alone(practised, tiny_base):
    _, before = practised
    for name, value in tiny_base[1].state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not any(p.grad is not None for p in tiny_base[1].parameters())


def test_own_token_still_reconstructs_after_practice(practised, tiny_base, aligned_face, face_embedding):
    result, _ = practised
    image, label = aligned_face
    size = tiny_base[1].config.image_size
    real = resize_image(image, size)
    region = face_region(resize_labels(label, size))

    def psnr(model) -> float:
        out = IdFacePipeline(model)(label, style=(image, label), identity_embedding=face_embedding,
                                    attention=False).image
        mse = ((out.astype(float) - real.astype(float)) ** 2)[region].mean()
        return 10 * np.log10(255 ** 2 / mse)

    assert psnr(result.model) > psnr(tiny_base[1]) - 0.5              # photo steps keep the fit


def test_reads_as_needs_both_sides_of_the_threshold(dlib_port):
    thr = dlib_port.threshold
    assert reads_as(dlib_port, thr - 0.1, thr + 0.1, 0.05)
    assert not reads_as(dlib_port, thr - 0.1, thr - 0.01, 0.05)      # still reads A as well
    assert not reads_as(dlib_port, thr - 0.02, thr + 0.1, 0.05)      # B not by the margin


def test_a_fitted_face_keeps_a_bounded_number_of_practised_identities(practised, tiny_base):
    result, _ = practised
    delta = WeightDelta.between(tiny_base[1], result.model)
    fitted = FittedFace("k", delta, {})
    for i in range(FittedFace.MAX_PRACTISED + 2):
        fitted.add_practised(f"id{i}", delta, {"steps": i})
    assert list(fitted.practised) == [f"id{i}" for i in range(2, FittedFace.MAX_PRACTISED + 2)]
    assert fitted.nbytes == delta.nbytes * (1 + FittedFace.MAX_PRACTISED)


def test_practice_against_two_recognizers_moves_both(tiny_base, aligned_face, dlib_port, face_embedding,
                                                     other_embedding):
    from idface.identity.registry import get_recognizer

    faceres = get_recognizer("faceres")
    also = {"faceres": (faceres, embed(faceres, aligned_face[0]).numpy(),
                        embed(faceres, load_image(TRAIN / "obama.png")).numpy())}
    result = practise_identity(tiny_base[1], dlib_port, *aligned_face, face_embedding, other_embedding,
                               InjectConfig(steps=12, max_seconds=None, stop_margin=10.0), also=also)
    assert set(result.probed) == {"dlib-resnet", "faceres"}
    assert set(result.summary()["recognizers_practised_against"]) == {"dlib-resnet", "faceres"}
    assert result.score_to_identity < result.score_to_identity_before          # dlib: distance to B fell
    first = practise_identity(tiny_base[1], dlib_port, *aligned_face, face_embedding, other_embedding,
                              InjectConfig(steps=0, max_seconds=None), also=also)
    assert result.probed["dlib-resnet"]["distance_to_identity"] == result.score_to_identity
    assert result.probed["faceres"]["similarity_to_identity"] > first.probed["faceres"]["similarity_to_identity"]
