"""Loss and metric networks (VGG19, LPIPS's AlexNet, TF-Inception) through idface.weights: on
pre-filled caches in the libraries' own layout (random weights), and offline without them. Never
the network: downloads are off, or torch.hub's file transfer is replaced by a local copy."""

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from idface import metrics as M
from idface import weights
from idface.cli import main
from idface.errors import UnavailableError
from idface.testing.weightfiles import fill_torch_hub, isolate
from idface.training import losses as L


@pytest.fixture(scope="session")
def filled_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    fill_torch_hub(home)
    return home


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    isolate(monkeypatch, tmp_path / "torch_home", tmp_path / "weights")
    return tmp_path / "torch_home"


@pytest.fixture
def filled(filled_home, tmp_path, monkeypatch) -> Path:
    isolate(monkeypatch, filled_home, tmp_path / "weights")
    return filled_home


def test_file_names_are_those_the_libraries_download():
    for spec in weights.NETWORK_WEIGHTS.values():
        assert Path(urlparse(spec.url()).path).name == spec.filename


def test_offline_each_missing_file_says_what_where_and_how(empty_home, capsys):
    for spec in weights.NETWORK_WEIGHTS.values():
        with pytest.raises(UnavailableError) as err:
            spec.path()
        msg = str(err.value)
        assert "\n" not in msg and spec.filename in msg and "downloads are off" in msg
        assert str(empty_home / "hub" / "checkpoints") in msg and spec.env in msg and "python -m idface weights fetch" in msg
    with pytest.raises(UnavailableError, match="LPIPS unavailable: .*alexnet-owt"):
        M.LPIPSMetric()
    with pytest.raises(UnavailableError, match="weights-inception-2015-12-05"):
        M.FIDMetric()
    with pytest.raises(UnavailableError, match="perceptual loss"):
        L.load_vgg19()
    assert main(["weights", "status"]) == 1
    status = json.loads(capsys.readouterr().out)
    assert status["vgg19"].startswith("missing:") and status["lpips-linear"].endswith("alex.pth")
    assert set(status) == {"arcface", "vgg19", "alexnet", "fid-inception", "parser", "lpips-linear"}


def test_unreachable_host_is_named(empty_home, monkeypatch):
    monkeypatch.setattr(weights, "host_reachable", lambda host, *a, **k: False)
    with pytest.raises(UnavailableError, match="download.pytorch.org unreachable"):
        weights.VGG19.path(download=True)


def test_download_goes_through_torchvision_into_the_hub_cache(empty_home, filled_home, monkeypatch):
    """With the network allowed, torchvision's weights API fetches AlexNet into torch hub's
    checkpoints/ (its file transfer replaced by a local copy); the next lookup finds the cache."""
    urls = []

    def transfer(url, dst, hash_prefix=None, progress=True):
        urls.append(url)
        shutil.copyfile(filled_home / "hub" / "checkpoints" / Path(urlparse(url).path).name, dst)

    monkeypatch.setattr(weights, "host_reachable", lambda host, *a, **k: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", transfer)
    path = weights.ALEXNET.path(download=True)
    assert path == empty_home / "hub" / "checkpoints" / weights.ALEXNET.filename and path.is_file()
    assert urls == [weights.ALEXNET.url()]
    assert weights.ALEXNET.path(download=False) == path


def test_prefilled_cache_perceptual_loss_and_lpips(filled):
    vgg = L.load_vgg19()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert L.vgg_perceptual_loss(vgg, x, x).item() == 0.0
    assert L.vgg_perceptual_loss(vgg, (x + 0.3 * torch.randn_like(x)).clamp(-1, 1), x).item() > 0
    lp = M.LPIPSMetric()
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert lp(a, a).abs().max().item() < 1e-6
    d = lp(a, b)
    assert d.shape == (2,) and (d > 0).all()
    assert weights.lpips_status() == "available"


@pytest.mark.slow
def test_prefilled_cache_fid_and_kid(filled):
    """TF-Inception at 299 x 299 on CPU: three images a side keeps it to seconds."""
    fid = M.FIDMetric()
    gen = torch.Generator().manual_seed(0)
    dark = torch.rand(3, 3, 64, 64, generator=gen) * 0.3
    bright = 0.7 + torch.rand(3, 3, 64, 64, generator=gen) * 0.3
    fid.update(dark, bright)
    out = fid.results()
    assert out["fid"] > 1 and out["kid_mean"] > 0.01 and "torch-fidelity" in out["fid_note"]
    assert set(out) == {"fid", "kid_mean", "kid_std", "fid_note"}
