"""`python -m idface eval` with LPIPS, FID and KID computable: their networks in a pre-filled torch
hub cache (the libraries' file layout, random weights), never the network."""

import json

import pytest
import torch

from idface.cli import main
from idface.testing.weightfiles import fill_torch_hub, isolate


@pytest.mark.slow
def test_eval_reports_lpips_fid_and_kid_from_a_filled_cache(prepared_eval, tmp_path, monkeypatch, capsys):
    from idface.model import IdFaceModel

    isolate(monkeypatch, tmp_path / "torch_home", tmp_path / "weights")
    fill_torch_hub(tmp_path / "torch_home", ("alexnet", "fid-inception"))
    torch.manual_seed(0)
    IdFaceModel("tiny").save_pretrained(tmp_path / "model")
    code = main(["eval", "--checkpoint", str(tmp_path / "model"), "--data", str(prepared_eval), "--split", "all",
                 "--limit", "3", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lpips"] > 0 and report["fid"] > 0 and report["kid_mean"] == report["kid_mean"]
    assert "torch-fidelity" in report["fid_note"]
    assert not {"lpips", "fid", "kid"} & set(report["unavailable"])
