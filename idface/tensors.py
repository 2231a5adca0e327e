"""Conversions between numpy images / label maps and torch tensors, written once.

- onehot(label_map): [H, W] or [B, H, W] class indices -> [B, K, H, W] float32 (K = 19).
- image_tensor(rgb): [H, W, 3] uint8 -> [1, 3, H, W] float in [0, 1].
- to_uint8(x): [3, H, W] or [1, 3, H, W] float in [0, 1] -> [H, W, 3] uint8 (clamped, rounded).
- gaussian_blur(x, sigma): separable Gaussian blur of [B, C, H, W], reflect-padded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from idface.labels import NUM_CLASSES


def onehot(label, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Class indices (torch or numpy, [H, W] or [B, H, W]) -> one-hot [B, K, H, W] float32."""
    index = label.long() if isinstance(label, torch.Tensor) else torch.from_numpy(np.asarray(label).astype(np.int64))
    if index.ndim == 2:
        index = index[None]
    return F.one_hot(index, num_classes).permute(0, 3, 1, 2).float()


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] or [1, 3, H, W] float in [0, 1] -> [H, W, 3] uint8 (clamped, rounded)."""
    if x.ndim == 4:
        x = x[0]
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] (sigma in pixels, radius 3 sigma), reflect-padded."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
