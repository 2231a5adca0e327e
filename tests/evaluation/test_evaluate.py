import json

import pytest
import torch

from idface.cli import main
from idface.errors import WeightsNotFoundError
from idface.evaluation.evaluate import injection_pairs, resolve_model_folder
from idface.training.data import FaceMaskDataset


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from idface.model import IdFaceModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    IdFaceModel("tiny").save_pretrained(folder)
    return folder


def test_eval_writes_every_metric_it_can_compute(tiny_checkpoint, prepared_eval, tmp_path, capsys):
    out = tmp_path / "metrics"
    code = main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(prepared_eval), "--split", "all",
                 "--limit", "4", "--json", "--out", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "metrics.json").read_text())
    assert report["images"] == 4
    assert 0 < report["psnr_db"] < 60 and -1 <= report["ssim_rgb"] <= 1
    from idface.identity.registry import available_recognizers, recognizer_status

    for name in available_recognizers():
        assert f"identity_score[{name}]" in report
        assert 0 <= report[f"identity_same_share[{name}]"] <= 1
        assert 0 <= report[f"injection_verified_as_B[{name}]"] <= 1
        assert 0 <= report[f"injection_still_A[{name}]"] <= 1
        for key in ("injection_not_A", "injection_success", "injection_verified_as_B_recompressed",
                    "injection_not_A_recompressed", "injection_success_recompressed"):
            assert 0 <= report[f"{key}[{name}]"] <= 1, key
        assert report[f"injection_success[{name}]"] <= report[f"injection_verified_as_B[{name}]"]
    if available_recognizers():
        assert report["injection_psnr_vs_own_token_db"] > 0 and -1 <= report["injection_ssim_rgb_vs_own_token"] <= 1
    for name, status in recognizer_status().items():
        if status != "available":
            assert report["unavailable"][f"identity[{name}]"] == status
    # every metric is either a number or an honest reason
    for metric in ("lpips", "fid", "mask_miou"):
        assert metric in report or report["unavailable"][metric]
    md = (out / "metrics.md").read_text()
    assert "| psnr_db |" in md and "unavailable:" in md


def test_injection_pairs_are_different_people(prepared_eval):
    ds = FaceMaskDataset.from_prepared(prepared_eval, "all")
    ids = ds.identities  # fixture: identity 100 + i // 2, so images come in same-person pairs
    pairs = injection_pairs(ds, None)
    for a, b in pairs:
        assert a != b and ids[a] != ids[b]
    if len(ds) <= 12:   # small sets: every ordered pair of different people
        assert len(pairs) == sum(ids[a] != ids[b] for a in range(len(ds)) for b in range(len(ds)))


def test_checkpoint_resolution(tmp_path, tiny_checkpoint):
    assert resolve_model_folder(str(tiny_checkpoint)) == str(tiny_checkpoint)
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000010" / "ema").mkdir(parents=True)
    (run / "checkpoints" / "step_00000010" / "trainer_state.json").write_text("{}")
    assert resolve_model_folder(str(run)).endswith("step_00000010/ema")
    with pytest.raises(WeightsNotFoundError, match="user/some-repo"):  # offline, not in the Hub cache
        resolve_model_folder("user/some-repo")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--checkpoint", str(empty), "--data", str(tmp_path)]) == 1


def test_eval_of_a_pinned_hub_checkpoint_offline_is_one_line_naming_what_was_tried(tmp_path, capsys, monkeypatch):
    """`idface eval --checkpoint org/name@<commit>` goes through idface.hub.resolve_checkpoint."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert main(["eval", "--checkpoint", f"org/name@{commit}", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: no usable checkpoint") and f"Hub repo org/name@{commit}" in err


def test_eval_on_a_training_configs_data(tiny_checkpoint, prepared_eval, tmp_path, capsys):
    pairs = [{"image": str(prepared_eval / "images" / f"0000{i}.png"), "label": str(prepared_eval / "labels" / f"0000{i}.png"),
              "identity": i // 2} for i in range(3)]
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"name": "pairs", "data": {"pairs": pairs}}))
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(cfg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["psnr_db"] > 0
