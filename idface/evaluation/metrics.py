"""Image metrics. PSNR and SSIM are written here (small, exact definitions); LPIPS and FID need
pretrained networks and are computed only where those weights exist on this machine; otherwise
the caller gets UnavailableError with the reason, and reports it instead of a number.

Images are float tensors [B, 3, H, W] in [0, 1] unless said otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from idface.errors import UnavailableError


def psnr(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, [B] (inf where identical)."""
    mse = (fake.float() - real.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g.float()


def ssim(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM [B] (Wang et al. 2004): Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03,
    per channel over the 'valid' region, averaged over channels and positions."""
    x, y = fake.float(), real.float()
    c = x.shape[1]
    g = _gaussian_window(window, sigma, x.device)
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def mean_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """mIoU over the classes present in either map (summed intersections / unions per class
    across all images, then averaged over classes). pred/target: [N, H, W] int."""
    pred = np.asarray(pred).reshape(-1)
    target = np.asarray(target).reshape(-1)
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious)) if ious else float("nan")


# ---------------------------------------------------------------------------------------------
# LPIPS (needs the `lpips` package and its pretrained weights)

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet (LPIPS backbone)


class LPIPSMetric:
    def __init__(self, device="cpu"):
        try:
            import lpips  # noqa: F401
        except ImportError:
            raise UnavailableError("the lpips package is not installed (pip install lpips; its AlexNet backbone weights must also be downloadable or cached)") from None
        # lpips builds torchvision's AlexNet with pretrained weights: from the torch hub cache only
        # (never downloaded here: a download would also print to stdout, breaking --json)
        alexnet = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME
        if not alexnet.is_file():
            raise UnavailableError(f"LPIPS needs torchvision's AlexNet weights in {alexnet} (not downloaded here)")
        try:
            self.net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        except Exception as err:
            raise UnavailableError(f"LPIPS weights could not be loaded offline: {type(err).__name__}: {err}") from None

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.net(fake * 2 - 1, real * 2 - 1).flatten()


# ---------------------------------------------------------------------------------------------
# FID

INCEPTION_FILENAME = "inception_v3_google-0cc3c7bd.pth"  # torchvision's ImageNet Inception-v3


def inception_candidates() -> list[Path]:
    out = []
    if os.environ.get("IDFACE_INCEPTION"):
        out.append(Path(os.environ["IDFACE_INCEPTION"]))
    out.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME)
    return out


class FIDMetric:
    """Frechet distance between Inception-v3 pool features (2048-d) of two image sets.

    Uses torchvision's ImageNet Inception-v3 weights from a local file: the numbers are FID in
    form but not comparable with the TF-Inception FID of papers (different weights/resizing);
    the report says so."""

    note = "torchvision Inception-v3 weights; not comparable with papers' TF-Inception FID"

    def __init__(self, device="cpu"):
        path = next((p for p in inception_candidates() if p.is_file()), None)
        if path is None:
            raise UnavailableError("Inception-v3 weights not found offline (tried " + ", ".join(str(p) for p in inception_candidates()) + ")")
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        net.fc = torch.nn.Identity()
        self.net = net.to(device).eval()
        self.device = device
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    @torch.no_grad()
    def _features(self, img: torch.Tensor) -> np.ndarray:
        x = F.interpolate(img.float().to(self.device), size=(299, 299), mode="bilinear", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        return self.net((x - mean) / std).double().cpu().numpy()

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        self.fake.append(self._features(fake))
        self.real.append(self._features(real))

    def compute(self) -> float:
        return frechet_distance(np.concatenate(self.fake), np.concatenate(self.real))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets [N, D]."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise UnavailableError(f"FID needs at least 2 images per set; got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(sa @ sb, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(sa.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sa + eps) @ (sb + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.trace(covmean))
