"""The fitting objective, one small function per term (kept importable so the trainer's injection
objective and these can be unified later).

Images are [B, 3, H, W] in [-1, 1] (the generator's tanh range); masks are [B, 1, H, W] floats in
[0, 1] (1 = the pixel counts). Weights are applied by the caller (FitConfig), not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from idface.training.losses import away_loss, cosine_loss, embed_generated, identity_loss  # shared with the trainer


def masked_l1(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |fake - real| over the pixels where weight [B, 1, H, W] is 1 (all pixels without one)."""
    diff = (fake.float() - real.float()).abs()
    if weight is None:
        return diff.mean()
    return (diff * weight).sum() / (weight.sum() * fake.shape[1]).clamp_min(1.0)


def ssim_loss(fake: torch.Tensor, real: torch.Tensor, window: int = 7,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - SSIM with a uniform window, on [0, 1] images: mean over pixels and channels, or
    weighted by weight [B, 1, H, W] (the SSIM map's weighted mean)."""
    x, y = (fake.float() + 1) / 2, (real.float() + 1) / 2
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(t, [pad] * 4, mode="reflect"), window, stride=1)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if weight is None:
        return 1 - ssim.mean()
    w = weight.expand_as(ssim)
    return 1 - (ssim * w).sum() / w.sum().clamp_min(1e-6)


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor, ssim_weight: float = 0.5,
                        mse_weight: float = 0.0, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel L1 + ssim_weight * (1 - SSIM) + mse_weight * MSE against the photo; pixel_weight
    [B, 1, H, W] (mean 1 over the image: e.g. the face region weighed up, zero where a pixel does
    not count) weighs every term."""
    w = torch.ones_like(fake[:, :1]) if pixel_weight is None else pixel_weight
    diff = fake.float() - real.float()
    loss = (diff.abs() * w).mean() + ssim_weight * ssim_loss(fake, real, weight=pixel_weight)
    if mse_weight:
        loss = loss + mse_weight * (diff.square() * w).mean()
    return loss


def edit_locality_loss(fake: torch.Tensor, photo: torch.Tensor, inside_target: torch.Tensor,
                       edited: torch.Tensor, pixel_weight: torch.Tensor, inside_weight: float = 0.5,
                       ssim_weight: float = 0.5, mse_weight: float = 0.0) -> torch.Tensor:
    """After a mask edit (edited [B, 1, H, W] = 1 inside the edited region, margin included):
    outside it the output must stay the photo, by the photo's own reconstruction loss (so an edit
    step also teaches the face); inside it follows inside_target (what the base generator draws
    for the new classes)."""
    outside = pixel_weight * (1 - edited)
    outside = outside / outside.mean().clamp_min(1e-6)                  # mean 1, as the photo's
    return (reconstruction_loss(fake, photo, ssim_weight, mse_weight, outside)
            + inside_weight * masked_l1(fake, inside_target, edited))


def anchor_loss(fake: torch.Tensor, base_output: torch.Tensor) -> torch.Tensor:
    """Roich et al.'s locality regulariser: on other masks / styles, the tuned generator stays where
    the base generator was (base_output computed once, no gradient)."""
    return masked_l1(fake, base_output.detach())


def injection_loss(recognizer, fake: torch.Tensor, foreign_embedding: torch.Tensor,
                   photo_embedding: torch.Tensor | None = None, pull: float = 1.0, away: float = 0.0,
                   margin: float = 0.1) -> torch.Tensor:
    """Identity injection: with another person's identity token, the recognizer should read that
    person in the output (pull x (1 - cos to the foreign embedding [B, D])) and, with away > 0, no longer
    the photo's person: the trainer's hinge (away_loss) past the recognizer's same-person
    threshold by `margin`, away from photo_embedding [B, D]. One recognizer pass for both. The
    caller adds a pixel term so people still see the photo's face."""
    embedding = embed_generated(recognizer, fake)                       # [B, D]
    loss = pull * cosine_loss(embedding, foreign_embedding)
    if away and photo_embedding is not None:
        loss = loss + away * away_loss(recognizer, embedding, photo_embedding, margin)
    return loss


__all__ = ["masked_l1", "ssim_loss", "reconstruction_loss", "edit_locality_loss", "anchor_loss",
           "injection_loss", "identity_loss", "away_loss"]
