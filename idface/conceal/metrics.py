"""How far an attacked image moved from the unattacked one: PSNR, SSIM, LPIPS where available.

- psnr(a, b): 10 log10(255^2 / MSE) over all pixels and channels of two uint8 images (inf if equal).
- ssim(a, b): Wang et al. 2004 structural similarity on the luminance (BT.601 Y), Gaussian window
  sigma 1.5 truncated at 11 x 11, K1 0.01, K2 0.03, mean over the image.
- ssim_torch: the same formula, differentiable, for budgets inside the optimisers.
- lpips_distance: LPIPS (Zhang et al. 2018) when the `lpips` package and its backbone weights are
  already on this machine; otherwise None with the reason from `lpips_status()` (never downloads).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 1.5 * 3.5 = 5.25 -> an 11 x 11 window, as in the reference implementation
SSIM_K1, SSIM_K2 = 0.01, 0.03
LUMA = np.array([0.299, 0.587, 0.114])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images of one shape."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"psnr: shapes differ {a64.shape} vs {b64.shape}")
    mse = float(np.mean((a64 - b64) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def mse_for_psnr(db: float) -> float:
    """The largest mean squared error (uint8 scale) that still reaches `db`."""
    return 255.0 ** 2 / 10 ** (db / 10.0)


def _luma(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x @ LUMA if x.ndim == 3 else x


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM on luminance between two uint8 images [H, W, 3] (or [H, W])."""
    x, y = _luma(a), _luma(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {x.shape} vs {y.shape}")
    blur = lambda v: gaussian_filter(v, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")  # noqa: E731
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap.mean())


def _gaussian_kernel(device, dtype) -> torch.Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-(t ** 2) / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim_torch(a: torch.Tensor, b: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Differentiable SSIM on luminance: a, b [B, 3, H, W] in [0, 1] -> [B] (or maps [B, 1, H, W])."""
    luma = torch.as_tensor(LUMA, dtype=a.dtype, device=a.device).view(1, 3, 1, 1)
    x, y = (a * luma).sum(1, keepdim=True) * 255, (b * luma).sum(1, keepdim=True) * 255
    g = _gaussian_kernel(a.device, a.dtype)
    r = g.numel() // 2

    def blur(v):
        v = F.pad(v, (r, r, r, r), mode="reflect")
        v = F.conv2d(v, g.view(1, 1, 1, -1))
        return F.conv2d(v, g.view(1, 1, -1, 1))

    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.mean((1, 2, 3)) if reduce else smap


# ---------------------------------------------------------------------------------------------
# LPIPS: only with weights already on this machine

_LPIPS_MODEL = None


def _torch_hub_checkpoint(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_status() -> str:
    """"available" or why LPIPS cannot be computed here."""
    if importlib.util.find_spec("lpips") is None:
        return "the lpips package is not installed"
    spec = importlib.util.find_spec("lpips")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "weights" / "v0.1" / "alex.pth").is_file():
        return f"LPIPS linear weights missing under {root / 'weights' / 'v0.1'}"
    backbone = _torch_hub_checkpoint("alexnet-owt-7be5be79.pth")
    if not backbone.is_file():
        return f"AlexNet backbone weights not found at {backbone} (downloads are not attempted)"
    return "available"


def lpips_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """LPIPS (AlexNet) between two uint8 images, or None when unavailable (see lpips_status)."""
    global _LPIPS_MODEL
    if lpips_status() != "available":
        return None
    if _LPIPS_MODEL is None:
        import lpips  # noqa: PLC0415

        _LPIPS_MODEL = lpips.LPIPS(net="alex", verbose=False).eval()
    to_t = lambda v: torch.from_numpy(np.array(v, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1  # noqa: E731
    with torch.inference_mode():
        return float(_LPIPS_MODEL(to_t(a), to_t(b)).item())


def distortion(original: np.ndarray, attacked: np.ndarray) -> dict:
    """The report's distortion block: psnr, ssim, lpips (or the reason it is unavailable)."""
    d = lpips_distance(original, attacked)
    status = lpips_status()
    return {
        "psnr": psnr(original, attacked),  # inf when identical
        "ssim": round(ssim(original, attacked), 5),
        "lpips": round(d, 5) if d is not None else "unavailable",
        "lpips_note": None if d is not None else status,
    }
