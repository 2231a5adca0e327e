"""A real run gets every weighted loss or refuses to start, naming every missing piece at once."""

import json

import pytest

from idface.cli import main
from idface.errors import InputError
from idface.testing.weightfiles import fill_torch_hub, isolate
from idface.training.config import load_config
from idface.training.preflight import preflight


@pytest.fixture
def offline_empty(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path / "torch_home", tmp_path / "weights")
    monkeypatch.setenv("IDFACE_WEIGHTS_DIR", str(tmp_path / "facexlib"))
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path / "facexlib"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # no ArcFace mirror copy either
    return tmp_path


def test_paper_run_offline_names_every_missing_piece_in_one_message(offline_empty, capsys):
    code = main(["train", "--config", "paper-256", "--max-steps", "1", "--output-dir", str(offline_empty / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    for piece in ("[identity] recognizer 'arcface'", "recognition_arcface_ir_se50.pth", "[perceptual] the perceptual loss",
                  "vgg19-dcbb9e9d.pth", "data: prepared folder", "python -m idface weights fetch", "--allow-missing-losses"):
        assert piece in err, piece
    assert not (offline_empty / "run").exists()


def test_allowed_missing_losses_are_switched_off_and_returned(offline_empty, tmp_path):
    cfg = _with_data(tmp_path)
    off = preflight(cfg, allow_missing=True)
    assert set(off) == {"identity", "perceptual"} and "vgg19-dcbb9e9d.pth" in off["perceptual"]
    assert cfg.identity_recognizer == "none"  # the null identity token
    with pytest.raises(InputError, match=r"2 missing piece\(s\)"):
        preflight(_with_data(tmp_path))


def _with_data(root):
    cfg = load_config("paper-256")
    cfg.data = {"root": str(root)}
    return cfg


def test_data_is_never_waived(offline_empty):
    with pytest.raises(InputError, match=r"1 missing piece\(s\): data: prepared folder"):
        preflight(load_config("paper-256"), allow_missing=True)


def test_with_the_networks_present_nothing_is_missing(offline_empty, tmp_path):
    from idface.identity.registry import available_recognizers

    if "dlib-resnet" not in available_recognizers():
        pytest.skip("dlib-resnet not installed")
    fill_torch_hub(offline_empty / "torch_home", ("vgg19",))
    cfg = _with_data(tmp_path)
    cfg.identity_recognizer = "dlib-resnet"
    assert preflight(cfg) == {}


def test_only_the_demo_config_allows_missing_losses():
    assert load_config("demo").allow_missing_losses is True
    assert load_config("paper-256").allow_missing_losses is False
    assert load_config("tiny").allow_missing_losses is False
