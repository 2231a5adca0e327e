"""Make the fitted copy's mask embedder local around one face's mask.

Why: the mask embedder (idface.model.generator.MaskEmbedder) maps each class's 32x32 map to the
16x16 base grid through one fully connected layer shared by the classes: every base cell sees the
whole map. A small edit (brows removed) therefore changes every cell a little, and the rest of the
generator turns that into a change all over the image. Measured on the demo checkpoint with three
faces: replacing the embedder's output outside the edited cells by the unedited one cuts the mean
change outside the painted region 3-5 fold (e.g. remove lips 7.5 -> 1.5 of 255 for a held-out
photo); the embedder is most of the generator's non-locality, the rest (stage-0 self-attention,
GroupNorm statistics) matters mostly for large edits such as hair.

What: a few hundred Adam steps on the embedder alone (two small matrices; milliseconds each, the
masks are area-resized once) minimising
    |E(photo mask) - E_base(photo mask)|^2                     (the photo's embedding is kept)
  + weight * |(E(edited) - E(photo mask)) outside the edit|^2  (an edit changes only its own cells)
over edited copies of the photo's mask: the fitting pool's edits and generic random local changes
(edits.random_blob_edit). The rest of the generator then sees the photo's embedding unchanged and
an edit only where it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
                           steps: int = 150, lr: float = 3e-3, weight: float = 10.0, band: float = 1.0,
                           radius: float = 2.0, grow: int = 1, batch: int = 12, seed: int = 0) -> dict[str, float]:
    """Tune `embedder` in place (see the module docstring). photo_mask [1, K, S, S] and
    edited_masks [E, K, S, S] one-hot; band: weight of a penalty on the linear layer's weights
    from input pixels farther than `radius` base cells from the output cell (locality for edits
    of any kind); each step takes `batch` of the edits at random. Returns the relative outside change before and after, and the photo's drift."""
    with torch.no_grad():
        size, r = embedder.size, embedder.base
        # the embedder's own first step, done once: classes 1..K-1, area-resized
        maps = F.interpolate(torch.cat([photo_mask, edited_masks])[:, 1:], size=(size, size), mode="area").flatten(2)
        delta = maps[1:] - maps[:1]                                         # [E, K-1, s*s]
        pairs = (delta.abs().sum(-1) > 0).nonzero()                        # [P, 2]: (edit, class) that changed
        rows = delta[pairs[:, 0], pairs[:, 1]]                             # [P, s*s]
        outside = (1 - edit_cells((edited_masks != photo_mask).any(1, keepdim=True), r, grow)).flatten(2)  # [E, 1, r*r]
        far = far_weights(embedder, radius)                                # [r*r, s*s]
        far = far / far.mean().clamp_min(1e-8)

    def photo_embedding() -> torch.Tensor:                                 # [1, C0, r*r]
        e = embedder.linear(maps[:1])                                      # [1, K-1, r*r]
        return torch.einsum("ck,bkr->bcr", embedder.conv.weight[:, :, 0, 0], e) + embedder.conv.bias[None, :, None]

    def edit_changes(chosen: torch.Tensor) -> torch.Tensor:               # [E', C0, r*r], E(edited) - E(photo)
        use = torch.isin(pairs[:, 0], chosen)
        where = torch.searchsorted(chosen, pairs[use, 0])                  # edit -> its row among the chosen
        lin = rows[use] @ embedder.linear.weight.t()                       # [P', r*r] (the bias cancels)
        dense = torch.zeros(len(chosen), delta.shape[1], lin.shape[1]).index_put((where, pairs[use, 1]), lin)
        return torch.matmul(embedder.conv.weight[:, :, 0, 0], dense)       # [C0, K-1] @ [E', K-1, r*r]

    generator = torch.Generator().manual_seed(seed)
    every = torch.arange(delta.shape[0])

    def terms(chosen: torch.Tensor = every) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        drift = (edit_changes(chosen) * outside[chosen]).square().mean()
        keep = (photo_embedding() - target).square().mean()
        spread = (embedder.linear.weight.square() * far).mean()
        return drift, keep, spread

    with torch.no_grad():
        target = photo_embedding()
        scale = target.square().mean().clamp_min(1e-8)
        w_scale = embedder.linear.weight.square().mean().clamp_min(1e-12)
        before = float(terms()[0] / scale)
    params = list(embedder.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        chosen = torch.randperm(len(every), generator=generator)[:batch].sort().values
        drift, keep, spread = terms(chosen)
        loss = (keep + weight * drift) / scale + band * spread / w_scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p, w in zip(params, was):
        p.requires_grad_(w)
    with torch.no_grad():
        drift, keep, spread = terms()
    return {"outside_before": before, "outside_after": float(drift / scale), "photo_drift": float(keep / scale),
            "spread": float(spread / w_scale)}
