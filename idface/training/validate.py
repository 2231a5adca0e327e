"""Reconstruction metrics of a generator on a data set: what training's periodic evaluation and
`python -m idface eval` both report (PSNR, SSIM on RGB, LPIPS / FID when given, identity
preservation per recognizer). Lives in training so that evaluation builds on training, never
the other way round.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from idface import metrics as M
from idface.tensors import onehot
from idface.training.data import FaceMaskDataset, collate


def _to_numpy(x) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def recognizer_scores(rec, a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(scores [B], same-person decisions [B]) of embedding pairs, by the recognizer's own rule."""
    scores = _to_numpy(rec.score(a, b)).reshape(-1)
    same = np.asarray([bool(rec.is_same(float(s))) for s in scores])
    return scores, same


def embed(rec, image: torch.Tensor) -> torch.Tensor:
    """image [B, 3, H, W] in [-1, 1] (generator frame) -> [B, D]."""
    with torch.no_grad():
        return rec.embed_frame(((image.float() + 1) / 2).clamp(0, 1)).float()


def batches(dataset: FaceMaskDataset, limit: int | None, batch_size: int):
    n = len(dataset) if not limit else min(limit, len(dataset))
    for start in range(0, n, batch_size):
        yield collate([dataset[i] for i in range(start, min(n, start + batch_size))])


@torch.no_grad()
def reconstruction_metrics(model, dataset: FaceMaskDataset, device, recognizers: dict | None = None,
                           limit: int | None = None, batch_size: int = 4, identity_recognizer=None,
                           lpips_metric=None, fid_metric=None, collect=None) -> dict:
    """PSNR / SSIM (+ LPIPS, FID when given) of reconstructions, and identity preservation per
    recognizer. The identity token comes from `identity_recognizer` (default: the recognizer in
    `recognizers` named by the model's config, if present)."""
    recognizers = recognizers or {}
    model.eval()
    cfg = model.config
    id_rec = identity_recognizer or recognizers.get(cfg.identity_recognizer)
    if id_rec is None and len(recognizers) == 1:
        only = next(iter(recognizers.values()))
        if getattr(only, "embedding_dim", None) == cfg.identity_dim:
            id_rec = only
    psnrs, ssims, lp = [], [], []
    id_scores = {name: [] for name in recognizers}
    id_same = {name: [] for name in recognizers}
    for batch in batches(dataset, limit, batch_size):
        real = batch["image"].to(device)
        mask = onehot(batch["label"].to(device), cfg.num_classes)
        emb = embed(id_rec, real) if id_rec is not None else None
        fake = model(mask, real, identity_embedding=emb).float().clamp(-1, 1)
        f01, r01 = (fake + 1) / 2, (real + 1) / 2
        psnrs += M.psnr(f01, r01, data_range=1.0).tolist()
        ssims += M.ssim_rgb(f01, r01).tolist()
        if lpips_metric is not None:
            lp += lpips_metric(f01, r01).tolist()
        if fid_metric is not None:
            fid_metric.update(f01, r01)
        for name, rec in recognizers.items():
            s, same = recognizer_scores(rec, embed(rec, fake), embed(rec, real))
            id_scores[name] += s.tolist()
            id_same[name] += same.tolist()
        if collect is not None:
            collect.append((batch, fake.cpu()))
    out = {
        "images": len(psnrs),
        "psnr_db": float(np.mean([p for p in psnrs if math.isfinite(p)] or [float("inf")])),
        "ssim_rgb": float(np.mean(ssims)),
    }
    if lp:
        out["lpips"] = float(np.mean(lp))
    for name in recognizers:
        out[f"identity_score[{name}]"] = float(np.mean(id_scores[name]))
        out[f"identity_same_share[{name}]"] = float(np.mean(id_same[name]))
    out["identity_token_from"] = getattr(id_rec, "name", None) if id_rec is not None else "null token (no recognizer)"
    return out
