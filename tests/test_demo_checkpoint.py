"""The bundled demo checkpoint (weights/idface-demo): found by the resolver when nothing else is
configured, loaded the same way as a Hub checkpoint, and good enough at what it was trained for
(its six training photos) for the app to show the method working offline."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants as hf_constants
from safetensors import safe_open

from idface.metrics import psnr

from idface.hub import BUNDLED_CHECKPOINTS, ENV_CHECKPOINT, ENV_REVISION, WEIGHTS_DIR, resolve_checkpoint
from idface.pipeline import IdFacePipeline

REPO = Path(__file__).resolve().parents[1]
DEMO = WEIGHTS_DIR / "idface-demo"
COMMIT = "d3e0d3e0d3e0d3e0d3e0d3e0d3e0d3e0d3e0d3e0"


def _load_eval_script():
    spec = importlib.util.spec_from_file_location("eval_demo", REPO / "scripts" / "eval_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    monkeypatch.delenv(ENV_REVISION, raising=False)


@pytest.fixture(scope="module")
def evaluator():
    ev = _load_eval_script()
    return ev, ev.DemoEvaluator(IdFacePipeline.from_pretrained(str(DEMO)))


def test_demo_is_the_default_checkpoint():
    assert BUNDLED_CHECKPOINTS[0] == "idface-demo"
    source = resolve_checkpoint()
    assert source.kind == "bundled" and source.path == DEMO.resolve()
    assert "bundled weights" in source.describe()


def test_demo_folder_is_a_hub_checkpoint_in_fp16_under_30_mb():
    config = json.loads((DEMO / "config.json").read_text())
    assert config["name"] == "demo" and config["identity_recognizer"] == "dlib-resnet"
    assert config["identity_dim"] == 128
    weights = DEMO / "model.safetensors"
    assert weights.stat().st_size <= 30 * 2**20
    with safe_open(str(weights), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}
    card = (DEMO / "README.md").read_text()
    for needed in ("six", "cannot", "new faces", "configs/demo.json"):
        assert needed in card, needed


def test_demo_loads_through_the_hub_path_like_a_hub_checkpoint(tmp_path, monkeypatch, evaluator):
    """The same folder put in an offline Hub cache resolves as a Hub repo and generates the same
    image as the bundled copy."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    repo_dir = cache / "models--idface--idface-demo"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).write_bytes((DEMO / name).read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)

    source = resolve_checkpoint("idface/idface-demo", weights_dir=tmp_path)
    assert source.kind == "hub" and source.commit == COMMIT
    hub_pipe = IdFacePipeline.from_pretrained("idface/idface-demo")
    _, ev = evaluator
    image, lm = ev.pairs["obama"]
    emb = ev.photo_embedding("obama")
    a = hub_pipe(lm, style=(image, lm), identity_embedding=emb, attention=False).image
    b = ev.pipe(lm, style=(image, lm), identity_embedding=emb, attention=False).image
    assert np.array_equal(a, b)


def test_reconstruction_of_a_training_photo_is_the_same_person(evaluator):
    module, ev = evaluator
    rec = ev.reconstruction("obama")
    assert rec["image"].shape == (ev.size, ev.size, 3)
    assert rec["same_person"], f"dlib distance {rec['identity_score']:.3f} >= {ev.recognizer.threshold}"
    assert rec["psnr_db"] >= 20.0


def test_identity_token_matters_for_the_reconstruction(evaluator):
    """The generator reads the identity token: without it (the learned null token) the output differs."""
    _, ev = evaluator
    image, lm = ev.pairs["obama"]
    with_id = ev.pipe(lm, style=(image, lm), identity_embedding=ev.photo_embedding("obama"), attention=False).image
    without = ev.pipe(lm, style=(image, lm), identity_embedding=None, attention=False).image
    assert np.abs(with_id.astype(int) - without.astype(int)).mean() > 0.5


@pytest.mark.parametrize("a,b", [("obama", "biden"), ("biden", "obama2"), ("astronaut", "grace_hopper")])
def test_identity_injection_reads_as_the_token_person(evaluator, a, b):
    """The paper's effect in the bundled model: mask and style of A, identity token of B. dlib's
    ResNet (idface's port, in the generator frame as the app's bars read it) places the output with
    B (distance < 0.6) and no longer with A, while it looks like the output with A's own token."""
    module, ev = evaluator
    image, lm = ev.pairs[a]
    out = ev.pipe(lm, style=(image, lm), identity_embedding=ev.photo_embedding(b), attention=False).image
    own = ev.generate(a)
    e = ev.embed(out)
    to_b = float(ev.recognizer.score(e, ev.photo_embedding(b)))
    to_a = float(ev.recognizer.score(e, ev.photo_embedding(a)))
    assert to_b < 0.6 <= to_a, (to_b, to_a)
    assert psnr(out, own) >= 25.0


@pytest.mark.parametrize("edit", ["close mouth", "remove brows"])
def test_mask_edit_changes_its_region_and_little_else(evaluator, edit):
    _, ev = evaluator
    result = ev.mask_edit(edit)
    assert result["changed_pixels"] > 20
    assert result["mean_change_inside"] > 8.0, result
    assert result["local"], {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def test_locality_measure_flags_a_global_change():
    """The measure used above can fail: a change spread over the whole image is not local."""
    module = _load_eval_script()
    before = np.zeros((64, 64, 3), np.uint8)
    after = np.full((64, 64, 3), 20, np.uint8)
    changed = np.zeros((64, 64), bool)
    changed[10:20, 10:20] = True
    assert not module.locality(before, after, changed)["local"]
    after_local = before.copy()
    after_local[10:20, 10:20] = 60
    assert module.locality(before, after_local, changed)["local"]
