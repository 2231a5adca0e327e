"""ArcFace IR-SE50 loading: the Hub-mirror path against a pre-filled Hugging Face cache (offline),
local folders first, honest unavailability, safe loading (weights_only) and the CPU forward pass.

The weights here are a randomly initialised IR-SE50 state dict in facexlib's format: this checks
the plumbing (lookup order, cache layout, strict loading, shapes, gradients), not recognition."""

import os
import pickle

import pytest
import torch

from idface.errors import UnavailableError, WeightsNotFoundError
from idface import weights
from idface.identity import arcface
from idface.identity.arcface import ArcFaceRecognizer, build_arcface_ir_se50
from idface.weights import arcface_weights_path

REPO = "idface-test/facexlib-mirror"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def random_state_file(tmp_path_factory):
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in build_arcface_ir_se50().state_dict().items()}
    path = tmp_path_factory.mktemp("arcface") / arcface.WEIGHTS_FILE
    torch.save(state, path)
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No local weights anywhere; facexlib's model_rootpath is a fresh folder."""
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path / "facexlib_weights"))
    monkeypatch.setenv("IDFACE_WEIGHTS_DIR", str(tmp_path / "local"))
    monkeypatch.setenv(weights.ARCFACE_MIRROR_REPO_ENV, REPO)
    found = weights.facexlib_weight_path(arcface.WEIGHTS_FILE)
    if found is not None:  # real weights in the repository's weights/facexlib
        pytest.skip(f"real ArcFace weights present at {found}")
    return tmp_path


def prefill_hf_cache(cache, src):
    """Hugging Face cache layout: models--ORG--REPO/{refs/main, snapshots/<commit>/<file>}."""
    repo_dir = cache / ("models--" + REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snap = repo_dir / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / arcface.WEIGHTS_FILE).write_bytes(src.read_bytes())


def test_offline_without_weights_is_unavailable_with_every_place_tried(isolated):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(WeightsNotFoundError) as err:
        arcface_weights_path(hf_cache_dir=isolated / "empty_cache")
    msg = str(err.value)
    assert "local folders" in msg and f"HF cache {REPO}/{arcface.WEIGHTS_FILE}" in msg and weights.ARCFACE_RELEASE_URL in msg
    with pytest.raises(UnavailableError, match="arcface unavailable"):
        ArcFaceRecognizer()


def test_hub_mirror_from_prefilled_cache_installs_into_facexlib_rootpath(isolated, random_state_file):
    cache = isolated / "hf_cache"
    prefill_hf_cache(cache, random_state_file)
    path = arcface_weights_path(hf_cache_dir=cache)
    assert path == isolated / "facexlib_weights" / arcface.WEIGHTS_FILE  # where facexlib looks
    assert path.read_bytes() == random_state_file.read_bytes()
    # now found locally, without the cache
    assert arcface_weights_path(hf_cache_dir=isolated / "empty_cache") == path
    assert arcface.arcface_status() == "available"


def test_hub_mirror_revision_pin_selects_the_snapshot(isolated, random_state_file, monkeypatch):
    cache = isolated / "hf_cache"
    prefill_hf_cache(cache, random_state_file)
    monkeypatch.setenv(weights.ARCFACE_MIRROR_REVISION_ENV, "f" * 40)  # a commit the cache does not hold
    with pytest.raises(WeightsNotFoundError, match=f"HF cache {REPO}"):
        arcface_weights_path(hf_cache_dir=cache)
    monkeypatch.setenv(weights.ARCFACE_MIRROR_REVISION_ENV, COMMIT)
    assert arcface_weights_path(hf_cache_dir=cache).read_bytes() == random_state_file.read_bytes()


def test_local_folder_comes_first(isolated, random_state_file):
    local = isolated / "local"
    local.mkdir()
    (local / arcface.WEIGHTS_FILE).write_bytes(random_state_file.read_bytes())
    assert arcface_weights_path() == local / arcface.WEIGHTS_FILE


@pytest.mark.slow
def test_recognizer_runs_on_cpu(random_state_file):
    rec = ArcFaceRecognizer(weights=random_state_file)
    assert (rec.name, rec.input_size, rec.embedding_dim, rec.metric) == ("arcface", 112, 512, "cosine")
    assert rec.threshold == 0.241 and rec.higher_is_more_similar and "FAR 0.01" in rec.threshold_source
    assert next(rec.model.parameters()).device.type == "cpu"
    chips = torch.rand(2, 3, 112, 112)
    e = rec.embed_aligned(chips)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2), atol=1e-4, rtol=0)
    frames = torch.rand(1, 3, 256, 256, requires_grad=True)
    s = rec.score(rec.embed_frame(frames)[0], e[0].detach())
    s.backward()
    assert frames.grad.abs().sum() > 0
    assert rec.is_same(rec.score(e[0].numpy(), e[0].numpy()))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_unsafe_or_wrong_files_are_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh, protocol=2)
    with pytest.raises(UnavailableError, match="could not be loaded"):
        ArcFaceRecognizer(weights=evil)
    wrong = tmp_path / "wrong.pth"
    torch.save({"input_layer.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UnavailableError, match="could not be loaded"):
        ArcFaceRecognizer(weights=wrong)
