"""The injection objective's sampling: which samples of a batch get a foreign identity token, and
which embedding it holds.

For a share `fraction` of each batch the identity token comes from another person B while mask and
style come from the sample's own photo A (the paper's identity injection, trained). The appearance
losses still compare the output with A; the identity terms pull the recognizer's embedding of the
output towards the token's embedding and push it past the recognizer's threshold away from A
(idface.training.losses.injection_loss / away_loss).

So that the token generalises beyond the handful of embeddings of the training photos, the pool of
foreign embeddings holds
  - every training photo's embedding, unaugmented and in `views` augmented views (flips, zoom,
    colour: the same person as a recognizer sees them under the training augmentation);
  - embeddings of extra photos that have no mask (`photos`: a photo needs no label map to give an
    embedding);
and a share `interpolate` of the foreign tokens are spherical interpolations between two pool
embeddings of people other than A (new points between identities, normalised like the token's
input). Photos named in `holdout` never enter the pool (held-out identity sources for evaluation).

    pool = build_identity_pool(dataset, recognizer, PoolConfig(...))   # IdentityPool [N, D]
    token_emb, foreign, target = sample_tokens(pool, own_emb, keys, fraction, interpolate, rng)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from idface.errors import InputError

# identity key of a sample without a person id (-1): its own index, offset past any real id
UNKNOWN_IDENTITY_BASE = 1 << 30


@dataclass
class PoolConfig:
    """`identity_pool` in the training config."""

    views: int = 4                   # augmented views per training photo (besides the plain one)
    interpolate: float = 0.5         # share of foreign tokens that are slerps between two people
    photos: list = field(default_factory=list)    # [{"path": ..., "identity": int}] extra photos, no mask
    holdout: list = field(default_factory=list)   # name prefixes of photos kept out of the pool

    @classmethod
    def from_dict(cls, d: dict | None) -> "PoolConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"training config: unknown identity_pool field(s) {', '.join(unknown)}")
        cfg = cls(**d)
        if not 0 <= cfg.interpolate <= 1 or cfg.views < 0:
            raise InputError("training config: identity_pool.interpolate must be in [0, 1] and views >= 0")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IdentityPool:
    embeddings: torch.Tensor         # [N, D] recognizer embeddings (float32)
    keys: torch.Tensor               # [N] int64 person key (identity, or UNKNOWN_IDENTITY_BASE + index)
    sources: list[str]               # [N] where each came from ("obama2 view 3", "photo x.jpg")

    def __len__(self) -> int:
        return int(self.keys.numel())


def identity_keys(identity: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Person key per sample: its identity, or (unknown, -1) a key of its own."""
    return torch.where(identity >= 0, identity, UNKNOWN_IDENTITY_BASE + index).long()


def held_out(name: str, holdout: list[str]) -> bool:
    return any(name == h or name.startswith(f"{h}_") for h in holdout)


@torch.no_grad()
def build_identity_pool(dataset, recognizer, cfg: PoolConfig, seed: int = 0, batch: int = 16,
                        base=None) -> IdentityPool:
    """Embed every non-held-out training photo (plain + cfg.views augmented views) and the extra
    photos with the frozen recognizer."""
    from pathlib import Path

    rng = np.random.default_rng([seed, 7877])
    images, keys, sources = [], [], []
    for i, sample in enumerate(dataset.samples):
        name = Path(sample.image).stem
        if held_out(name, cfg.holdout):
            continue
        key = sample.identity if sample.identity >= 0 else UNKNOWN_IDENTITY_BASE + i
        for v in range(1 + cfg.views):
            # int index: the plain photo; (index, seed): an augmented view     [3, S, S] in [-1, 1]
            image = dataset[i if v == 0 else (i, int(rng.integers(1 << 31)))]["image"]
            images.append(image)
            keys.append(key)
            sources.append(f"{name} view {v}")
            if dataset.augment_cfg is None:
                break
    embeddings = []
    for k in range(0, len(images), batch):
        chunk = (torch.stack(images[k:k + batch]) + 1) / 2                       # [b, 3, S, S] in [0, 1]
        embeddings.append(recognizer.embed_frame(chunk.clamp(0, 1)).float().cpu())
    for photo in cfg.photos:
        path = Path(photo["path"])
        path = path if path.is_absolute() or base is None else Path(base) / path
        if held_out(path.stem, cfg.holdout):
            continue
        emb, _ = recognizer.embed_photo(str(path))
        embeddings.append(torch.as_tensor(np.asarray(emb), dtype=torch.float32)[None])
        keys.append(int(photo["identity"]))
        sources.append(f"photo {path.name}")
    if not embeddings:
        raise InputError("the identity pool is empty (every photo held out?)")
    return IdentityPool(torch.cat(embeddings), torch.tensor(keys, dtype=torch.long), sources)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b [B, D] at t [B] (unit-norm result)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1).clamp(-1 + 1e-6, 1 - 1e-6))[:, None]     # [B, 1]
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def sample_tokens(pool: IdentityPool | None, own: torch.Tensor, keys: torch.Tensor, fraction: float,
                  interpolate: float, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """own [B, D] embeddings of the batch's photos, keys [B] their person keys ->
    (token embedding [B, D], foreign [B] bool). A foreign row holds a pool embedding of another
    person (or, with probability `interpolate`, a slerp between two such embeddings); a row whose
    person is the only one in the pool keeps its own."""
    b = own.shape[0]
    foreign = torch.zeros(b, dtype=torch.bool)
    token = own.clone()
    if pool is None or fraction <= 0 or len(pool) == 0:
        return token, foreign.to(own.device)
    draws = torch.rand(b, 3, generator=generator)                              # [B, 3]: foreign?, slerp?, t
    for i in range(b):
        if draws[i, 0] >= fraction:
            continue
        others = torch.nonzero(pool.keys != keys[i].cpu()).flatten()
        if others.numel() == 0:
            continue
        pick = others[torch.randint(others.numel(), (2,), generator=generator)]
        emb = pool.embeddings[pick].to(own)
        if draws[i, 1] < interpolate:
            emb = slerp(emb[:1], emb[1:], draws[i, 2:3].to(own))[0] * emb[0].norm()
        else:
            emb = emb[0]
        token[i] = emb
        foreign[i] = True
    return token, foreign.to(own.device)
