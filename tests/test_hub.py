"""Checkpoints: save/load round trip, strict loading, and the one resolver (argument, env,
bundled, Hub cache offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import load_file, save_file

from idface.errors import WeightsNotFoundError
from idface.hub import ENV_CHECKPOINT, ENV_REVISION, resolve_checkpoint
from idface.model import CheckpointMismatchError, IdFaceModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT_V1 = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    monkeypatch.delenv(ENV_REVISION, raising=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, IdFaceModel]:
    torch.manual_seed(0)
    model = IdFaceModel("tiny").eval()
    with torch.no_grad():  # non-zero everywhere, so every tensor matters for the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    model.save_pretrained(folder)
    return folder, model


def example_inputs(model: IdFaceModel):
    g = torch.Generator().manual_seed(1)
    s, k = model.config.image_size, model.config.num_classes
    lm = torch.randint(0, k, (1, s // 8, s // 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    mask = torch.nn.functional.one_hot(lm, k).permute(0, 3, 1, 2).float()
    image = torch.rand(1, 3, s, s, generator=g) * 2 - 1
    embedding = torch.randn(1, model.config.identity_dim, generator=g)
    return mask, image, embedding


def outputs(model: IdFaceModel) -> torch.Tensor:
    mask, image, embedding = example_inputs(model)
    with torch.no_grad():
        return model(mask, image, identity_embedding=embedding)


def test_checkpoint_folder_holds_config_safetensors_and_card(saved):
    folder, model = saved
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"]
    card = (folder / "README.md").read_text()
    assert "tiny" in card and "synthetic" in card and "library_name: idface" in card


def test_save_load_round_trip_reproduces_outputs_exactly(saved):
    folder, model = saved
    loaded = IdFaceModel.from_pretrained(folder)
    assert loaded.config == model.config
    assert not loaded.training
    assert torch.equal(outputs(loaded), outputs(model))


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    for name in ("config.json", "README.md"):
        (dst / name).write_bytes((src / name).read_bytes())
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_missing_tensor_fails_loudly(saved, tmp_path):
    folder, _ = saved
    bad = _edited_copy(folder, tmp_path / "bad", lambda s: s.pop("generator.to_rgb.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"1 missing tensor\(s\): generator.to_rgb.weight"):
        IdFaceModel.from_pretrained(bad)


def test_extra_tensor_fails_loudly(saved, tmp_path):
    folder, _ = saved
    bad = _edited_copy(folder, tmp_path / "bad", lambda s: s.update(surplus=torch.zeros(3)))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected tensor\(s\): surplus"):
        IdFaceModel.from_pretrained(bad)


def test_misshaped_tensor_fails_loudly(saved, tmp_path):
    folder, _ = saved
    bad = _edited_copy(folder, tmp_path / "bad",
                       lambda s: s.update({"generator.to_rgb.bias": torch.zeros(4)}))
    with pytest.raises(CheckpointMismatchError, match="mis-shaped.*generator.to_rgb.bias"):
        IdFaceModel.from_pretrained(bad)


def test_folder_without_weights_is_not_unpickled(saved, tmp_path):
    folder, model = saved
    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_bytes((folder / "config.json").read_bytes())
    torch.save(model.state_dict(), bad / "pytorch_model.bin")
    with pytest.raises(WeightsNotFoundError, match="no model.safetensors"):
        IdFaceModel.from_pretrained(bad)


# ---- resolver ----

def test_resolver_error_names_every_place_tried(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_checkpoint(weights_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "argument: none given" in message
    assert f"{ENV_CHECKPOINT}: not set" in message
    assert str(tmp_path / "idface-demo") in message
    assert "fix:" in message


def test_explicit_folder_wins_over_env_and_bundled(saved, tmp_path, monkeypatch):
    folder, _ = saved
    monkeypatch.setenv(ENV_CHECKPOINT, str(tmp_path / "elsewhere"))
    source = resolve_checkpoint(str(folder), weights_dir=tmp_path)
    assert source.kind == "explicit-local" and source.path == folder.resolve()
    assert str(folder.resolve()) in source.describe()


def test_explicit_that_fails_does_not_fall_back(saved, tmp_path, monkeypatch):
    folder, _ = saved
    monkeypatch.setenv(ENV_CHECKPOINT, str(folder))
    with pytest.raises(WeightsNotFoundError, match="no such folder, and not a Hub repo id.*explicitly"):
        resolve_checkpoint("./no/such/folder", weights_dir=tmp_path)


def test_env_folder_then_bundled(saved, tmp_path, monkeypatch):
    folder, _ = saved
    monkeypatch.setenv(ENV_CHECKPOINT, str(folder))
    assert resolve_checkpoint(weights_dir=tmp_path).kind == "env"
    monkeypatch.delenv(ENV_CHECKPOINT)
    bundled = tmp_path / "idface-demo"
    bundled.mkdir()
    (bundled / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="missing model.safetensors"):
        resolve_checkpoint(weights_dir=tmp_path)
    (bundled / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    source = resolve_checkpoint(weights_dir=tmp_path)
    assert source.kind == "bundled" and source.path == bundled.resolve()


def fill_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...]) -> None:
    """The layout huggingface_hub writes: models--org--name/{refs/<ref>, snapshots/<commit>/...}."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (repo_dir / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo_dir / "refs" / ref).write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, saved) -> Path:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    folder, _ = saved
    fill_hub_cache(cache, "idface/tiny-test", folder, COMMIT, ("main",))
    fill_hub_cache(cache, "idface/tiny-test", folder, COMMIT_V1, ("v1",))
    return cache


def test_hub_repo_from_offline_cache(hub_cache, saved, tmp_path):
    _, model = saved
    source = resolve_checkpoint("idface/tiny-test", weights_dir=tmp_path)
    assert source.kind == "hub" and source.repo_id == "idface/tiny-test"
    assert source.commit == COMMIT and source.path == hub_cache / "models--idface--tiny-test" / "snapshots" / COMMIT
    assert "idface/tiny-test@main" in source.describe()
    assert torch.equal(outputs(IdFaceModel.from_pretrained(str(source.path))), outputs(model))


def test_hub_revision_from_spec_and_env(hub_cache, tmp_path, monkeypatch):
    assert resolve_checkpoint("idface/tiny-test@v1", weights_dir=tmp_path).commit == COMMIT_V1
    assert resolve_checkpoint(f"idface/tiny-test@{COMMIT}", weights_dir=tmp_path).commit == COMMIT
    monkeypatch.setenv(ENV_CHECKPOINT, "idface/tiny-test")
    monkeypatch.setenv(ENV_REVISION, "v1")
    source = resolve_checkpoint(weights_dir=tmp_path)
    assert source.kind == "env" and source.revision == "v1" and source.commit == COMMIT_V1


def test_hub_unknown_revision_names_the_repo_and_offline_mode(hub_cache, tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_checkpoint("idface/tiny-test@v2", weights_dir=tmp_path)
    assert "idface/tiny-test@v2" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value)


def test_mixin_from_pretrained_reads_the_hub_cache(hub_cache, saved):
    _, model = saved
    loaded = IdFaceModel.from_pretrained("idface/tiny-test", revision="v1")
    assert np.array_equal(outputs(loaded).numpy(), outputs(model).numpy())
