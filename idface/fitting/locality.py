"""Make the fitted copy's mask embedder local around one face's mask.

Why: the mask embedder (idface.model.generator.MaskEmbedder) maps each class's 32x32 map to the
16x16 base grid through one fully connected layer shared by the classes: every base cell sees the
whole map. A small edit (brows removed) therefore changes every cell a little, and the rest of the
generator turns that into a change all over the image. Measured on the demo checkpoint with three
faces: replacing the embedder's output outside the edited cells by the unedited one cuts the mean
change outside the painted region 3-5 fold (e.g. remove lips 7.5 -> 1.5 of 255 for a held-out
photo); the embedder is most of the generator's non-locality, the rest (stage-0 self-attention,
GroupNorm statistics) matters mostly for large edits such as hair.

What: some tens of Adam steps on the embedder's linear layer alone (one small matrix; a few
milliseconds each, the masks are area-resized once) minimising, per class map,
    |L(photo map) - L_base(photo map)|^2                       (the photo's embedding is kept)
  + weight * |L(edited map - photo map) outside the edit|^2    (an edit changes only its own cells)
  + band * |weights from pixels beyond a radius of the cell|^2 (local for any edit, not only these)
over edited copies of the photo's mask: the fitting pool's edits and generic random local changes
(edits.random_blob_edit). The rest of the generator then sees the photo's embedding unchanged and
an edit only where it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from idface.optim import Adam
from idface.model.generator import MaskEmbedder


def edit_cells(changed: torch.Tensor, base_resolution: int, grow: int = 1) -> torch.Tensor:
    """changed [E, 1, S, S] (1 where the class changed) -> [E, 1, r, r]: the base-grid cells an
    edit touches, grown by `grow` cells (where its embedding may change)."""
    cells = F.adaptive_max_pool2d(changed.float(), base_resolution)
    if grow > 0:
        cells = F.max_pool2d(cells, 2 * grow + 1, stride=1, padding=grow)
    return cells


def far_weights(embedder: MaskEmbedder, radius: float) -> torch.Tensor:
    """[r*r, s*s]: how far (in base cells, beyond `radius`) each input pixel of the embedder's
    linear layer lies from each output cell; 0 within the radius."""
    r, s = embedder.base, embedder.size
    out = (torch.stack(torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij"), -1).reshape(-1, 2) + 0.5) / r
    inp = (torch.stack(torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij"), -1).reshape(-1, 2) + 0.5) / s
    dist = torch.cdist(out.float(), inp.float()) * r                       # in base cells
    return (dist - radius).clamp_min(0)


def localise_mask_embedder(embedder: MaskEmbedder, photo_mask: torch.Tensor, edited_masks: torch.Tensor,
                           steps: int = 60, lr: float = 1e-2, weight: float = 10.0, band: float = 1.0,
                           radius: float = 2.0, grow: int = 1) -> dict[str, float]:
    """Tune the embedder's shared linear layer in place (see the module docstring; its 1x1 class
    mixing is left alone: it acts per cell). photo_mask [1, K, S, S] and edited_masks [E, K, S, S]
    one-hot; band: weight of a penalty on the linear layer's weights from input pixels farther
    than `radius` base cells from the output cell (locality for edits of any kind). Returns the
    relative outside change before and after, the photo's embedding drift and the far weights."""
    linear = embedder.linear                                               # s*s -> r*r, shared by classes
    with torch.no_grad():
        size, r = embedder.size, embedder.base
        # the embedder's own first step, done once: classes 1..K-1, area-resized
        maps = F.interpolate(torch.cat([photo_mask, edited_masks])[:, 1:], size=(size, size), mode="area").flatten(2)
        delta = maps[1:] - maps[:1]                                         # [E, K-1, s*s]
        pairs = (delta.abs().sum(-1) > 0).nonzero()                        # [P, 2]: (edit, class) that changed
        rows = delta[pairs[:, 0], pairs[:, 1]]                             # [P, s*s]
        outside = (1 - edit_cells((edited_masks != photo_mask).any(1, keepdim=True), r, grow)).flatten(1)  # [E, r*r]
        outside = outside[pairs[:, 0]]                                     # [P, r*r]
        far = far_weights(embedder, radius)                                # [r*r, s*s]
        far = far / far.mean().clamp_min(1e-8)
        count = max(1, delta.shape[0] * delta.shape[1])                    # (edit, class) rows, changed or not

    def terms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        change = rows @ linear.weight.t()                                  # [P, r*r]: E(edited) - E(photo), per class
        drift = (change * outside).square().sum() / (count * r * r)
        keep = (linear(maps[:1]) - target).square().mean()                 # [1, K-1, r*r]
        spread = (linear.weight.square() * far).mean()
        return drift, keep, spread

    with torch.no_grad():
        target = linear(maps[:1])
        scale = target.square().mean().clamp_min(1e-8)
        w_scale = linear.weight.square().mean().clamp_min(1e-12)
        before = float(terms()[0] / scale)
    params = list(linear.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = Adam(params, lr=lr)
    for _ in range(steps):
        drift, keep, spread = terms()
        loss = (keep + weight * drift) / scale + band * spread / w_scale
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, w in zip(params, was):
        p.requires_grad_(w)
    with torch.no_grad():
        drift, keep, spread = terms()
    return {"outside_before": before, "outside_after": float(drift / scale), "photo_drift": float(keep / scale),
            "far_weights": float(spread / w_scale)}
