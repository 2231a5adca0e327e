"""Pre-filled weight caches for tests: the files idface.weights looks for, in the layout and format
the libraries write them (torch hub's checkpoints/ under $TORCH_HOME), with random weights.

    fill_torch_hub(torch_home, ("vgg19", "alexnet", "fid-inception"))

The loading code then runs exactly as on a machine that downloaded the real files; only the
numbers differ. Large fully-connected layers are stored as one value broadcast to their shape
(a 4096 x 25088 layer costs 4 bytes on disk), so that writing and loading the files stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch

from idface import weights


def _small_on_disk(state: dict[str, torch.Tensor], big: int = 1 << 20) -> dict[str, torch.Tensor]:
    """Tensors over `big` elements become a constant broadcast to their shape (a stride-0 view)."""
    return {k: (v.new_full((1,) * v.dim(), 0.01).expand(v.shape) if v.numel() > big else v) for k, v in state.items()}


def vgg19_state() -> dict[str, torch.Tensor]:
    """torchvision's vgg19() state dict (features.* and classifier.*), random."""
    from torchvision.models import vgg19

    with torch.device("meta"):
        shapes = vgg19(weights=None).state_dict()
    from torchvision.models.vgg import cfgs, make_layers

    features = {f"features.{k}": v for k, v in make_layers(cfgs["E"], batch_norm=False).state_dict().items()}
    rest = {k: torch.zeros(1).expand(v.shape) for k, v in shapes.items() if not k.startswith("features.")}
    return {**features, **rest}


def alexnet_state() -> dict[str, torch.Tensor]:
    """torchvision's alexnet() state dict, random (default initialisation)."""
    from torchvision.models import alexnet

    return _small_on_disk(alexnet(weights=None).state_dict())


def fid_inception_state() -> dict[str, torch.Tensor]:
    """torch-fidelity's FeatureExtractorInceptionV3 state dict, random: the network is built with
    its loading step skipped, then its freshly initialised parameters are what the file holds."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():  # He init keeps activations alive through ~100 layers (the default shrinks them to ~0)
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net.state_dict()


_STATES = {"vgg19": vgg19_state, "alexnet": alexnet_state, "fid-inception": fid_inception_state}


def fill_torch_hub(torch_home: str | Path, keys=("vgg19", "alexnet", "fid-inception"), seed: int = 0) -> dict[str, Path]:
    """Write each file as torch.hub would have downloaded it: <torch_home>/hub/checkpoints/<file>.
    Set TORCH_HOME=<torch_home> for idface.weights (and the libraries) to find them."""
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    out = {}
    for key in keys:
        path = folder / weights.NETWORK_WEIGHTS[key].filename
        torch.save(_STATES[key](), path)
        out[key] = path
    return out


def isolate(monkeypatch, torch_home: str | Path, weights_dir: str | Path) -> None:
    """Point idface.weights and the libraries at `torch_home` (TORCH_HOME) and an empty
    repository weights folder, with no per-file overrides and downloads off."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in weights.NETWORK_WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setattr(weights, "WEIGHTS_DIR", Path(weights_dir))
    monkeypatch.setattr(weights, "_FAILED_DOWNLOADS", {})
