"""Training data: (image, label map) pairs with configurable augmentation, and a deterministic
batch sampler so that a resumed run sees exactly the batches (and augmentations) it would have
seen without the interruption.

Sources:
  - a folder made by `python -m idface prepare` (index.csv + images/ + labels/), one split;
  - two folders whose files pair up by stem (images_dir/NAME.* with labels_dir/NAME.png);
  - an explicit list of {"image": path, "label": path} pairs (the bundled demo photos).

Each item: image [3, S, S] float in [-1, 1], label [S, S] int64 class indices, identity (int,
-1 when unknown), name. Augmentation randomness comes from a per-item seed that the sampler
draws from (run seed, epoch, position), never from global RNG state.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from idface.errors import InputError
from idface.images import load_image, load_mask
from idface.labels import FLIP_PERMUTATION

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_MAX_ITEMS = 256  # data sets up to this size are kept decoded in memory


@dataclass
class AugmentConfig:
    """All off by default (the paper trains on CelebAMask-HQ without geometric augmentation
    beyond flips); the demo preset turns everything up."""

    flip: float = 0.5  # probability of a horizontal flip (left/right classes swapped)
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range (>1 zooms in)
    shift: float = 0.0  # max translation, fraction of the side
    rotate: float = 0.0  # max rotation, degrees
    warp: float = 0.0  # "mask edits": smooth random deformation of image and mask together, max displacement as a fraction of the side
    warp_grid: int = 4  # control points per side of the deformation field
    brightness: float = 0.0  # multiplicative, +-
    contrast: float = 0.0  # +-
    saturation: float = 0.0  # +-
    gamma: float = 0.0  # log-uniform +-

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        d = dict(d or {})
        for key in ("scale",):
            if key in d:
                d[key] = tuple(d[key])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def augment(image: torch.Tensor, label: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """image [3, H, W] in [0, 1], label [H, W] int64 -> augmented pair (same shapes)."""
    if rng.random() < cfg.flip:
        image = image.flip(-1)
        label = torch.as_tensor(FLIP_PERMUTATION, dtype=torch.long)[label.flip(-1)]

    H, W = label.shape
    zoom = float(rng.uniform(*cfg.scale))
    angle = math.radians(float(rng.uniform(-cfg.rotate, cfg.rotate))) if cfg.rotate else 0.0
    tx, ty = (rng.uniform(-cfg.shift, cfg.shift, size=2) * 2).tolist() if cfg.shift else (0.0, 0.0)
    geometric = zoom != 1.0 or angle != 0.0 or tx != 0.0 or ty != 0.0 or cfg.warp > 0
    if geometric:
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, [1, 1, H, W], align_corners=False)  # [1, H, W, 2]
        if cfg.warp > 0:
            g = cfg.warp_grid
            disp = torch.from_numpy(rng.uniform(-1, 1, size=(1, 2, g, g)).astype(np.float32)) * (2 * cfg.warp)
            disp = F.interpolate(disp, size=(H, W), mode="bicubic", align_corners=True)
            grid = grid + disp.permute(0, 2, 3, 1)
        image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        label = F.grid_sample(label[None, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)[0, 0].long()

    if cfg.brightness:
        image = image * float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
    if cfg.contrast:
        mean = image.mean()
        image = (image - mean) * float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
    if cfg.saturation:
        gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
        image = (image - gray) * float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)) + gray
    image = image.clamp(0, 1)
    if cfg.gamma:
        image = image.pow(float(math.exp(rng.uniform(-cfg.gamma, cfg.gamma))))
    return image.contiguous(), label.contiguous()


@dataclass
class Sample:
    image: Path
    label: Path
    identity: int = -1
    name: str = ""


class FaceMaskDataset(torch.utils.data.Dataset):
    """Index by int (no augmentation) or by (int, seed) (augmented with that seed)."""

    def __init__(self, samples: Sequence[Sample], size: int, augment_cfg: AugmentConfig | None = None):
        if not samples:
            raise InputError("the training data set is empty")
        self.samples = list(samples)
        self.size = int(size)
        self.augment_cfg = augment_cfg
        # small sets (the bundled demo photos) are decoded and resized once, then kept in memory
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if len(self.samples) <= CACHE_MAX_ITEMS else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def identities(self) -> list[int]:
        return [s.identity for s in self.samples]

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image [3, S, S] float in [0, 1], label [S, S] int64), unaugmented."""
        if self._cache is not None and i in self._cache:
            image, label = self._cache[i]
            return image.clone(), label.clone()
        s = self.samples[i]
        rgb = load_image(s.image, what=f"training image {s.image}")
        lm = load_mask(s.label, what=f"label map {s.label}")
        if rgb.shape[:2] != (self.size, self.size):
            rgb = np.asarray(Image.fromarray(rgb).resize((self.size, self.size), Image.Resampling.LANCZOS))
        if lm.shape != (self.size, self.size):
            lm = np.asarray(Image.fromarray(lm).resize((self.size, self.size), Image.Resampling.NEAREST))
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
        label = torch.from_numpy(lm.astype(np.int64))
        if self._cache is not None:
            self._cache[i] = (image, label)
            return image.clone(), label.clone()
        return image, label

    def __getitem__(self, key) -> dict:
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
        else:
            i, seed = int(key), None
        image, label = self.load(i)
        if seed is not None and self.augment_cfg is not None:
            image, label = augment(image, label, self.augment_cfg, np.random.default_rng(seed))
        s = self.samples[i]
        return {"image": image * 2 - 1, "label": label, "identity": s.identity, "name": s.name or s.image.stem, "index": i}

    # constructors --------------------------------------------------------------------------
    @classmethod
    def from_prepared(cls, root: str | Path, split: str = "train", size: int | None = None,
                      augment_cfg: AugmentConfig | None = None, limit: int | None = None) -> "FaceMaskDataset":
        root = Path(root)
        index = root / "index.csv"
        if not index.is_file():
            raise InputError(f"{index} not found: run `python -m idface prepare --raw RAW --out {root}` first")
        samples = []
        with open(index, newline="") as fh:
            for row in csv.DictReader(fh):
                if split != "all" and row["split"] != split:
                    continue
                samples.append(Sample(root / "images" / f"{row['name']}.png", root / "labels" / f"{row['name']}.png",
                                      int(row.get("identity", -1) or -1), row["name"]))
        if limit:
            samples = samples[:limit]
        if not samples:
            raise InputError(f"{index} lists no images in split {split!r}")
        if size is None:
            size = Image.open(samples[0].image).size[0]
        return cls(samples, size, augment_cfg)

    @classmethod
    def from_folders(cls, images_dir: str | Path, labels_dir: str | Path, size: int,
                     augment_cfg: AugmentConfig | None = None) -> "FaceMaskDataset":
        images_dir, labels_dir = Path(images_dir), Path(labels_dir)
        samples = []
        for p in sorted(images_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and (labels_dir / f"{p.stem}.png").is_file():
                samples.append(Sample(p, labels_dir / f"{p.stem}.png", -1, p.stem))
        if not samples:
            raise InputError(f"no image in {images_dir} has a label map <name>.png in {labels_dir}")
        return cls(samples, size, augment_cfg)

    @classmethod
    def from_pairs(cls, pairs: Sequence[dict], size: int, augment_cfg: AugmentConfig | None = None,
                   base: Path | None = None) -> "FaceMaskDataset":
        base = Path(base) if base else Path(".")
        samples = []
        for k, pair in enumerate(pairs):
            img, lab = base / pair["image"], base / pair["label"]
            for p in (img, lab):
                if not p.is_file():
                    raise InputError(f"training pair {k}: {p} not found")
            samples.append(Sample(img, lab, int(pair.get("identity", -1)), pair.get("name", img.stem)))
        return cls(samples, size, augment_cfg)


def dataset_from_config(data_cfg: dict, size: int, split: str, augment_cfg: AugmentConfig | None, base: Path) -> FaceMaskDataset:
    """data_cfg: {"root": prepared folder} | {"images": dir, "labels": dir} | {"pairs": [...]};
    relative paths are taken from `base` (the repository root)."""
    if "root" in data_cfg:
        root = Path(data_cfg["root"])
        root = root if root.is_absolute() else base / root
        return FaceMaskDataset.from_prepared(root, split, size, augment_cfg, limit=data_cfg.get(f"{split}_limit"))
    if "images" in data_cfg:
        return FaceMaskDataset.from_folders(base / data_cfg["images"], base / data_cfg["labels"], size, augment_cfg)
    if "pairs" in data_cfg:
        pairs = data_cfg["pairs"] if split == "train" else data_cfg.get("test_pairs", data_cfg["pairs"])
        return FaceMaskDataset.from_pairs(pairs, size, augment_cfg, base)
    raise InputError('the config\'s "data" needs "root" (a prepared folder), "images"+"labels", or "pairs"')


class ResumableBatchSampler:
    """Yields per-rank batches of (dataset index, augmentation seed).

    Epoch e is a permutation of the data set drawn from (seed, e); a data set smaller than one
    global batch (batch_size * world_size) is repeated with fresh permutations. Every global batch
    is split across ranks; `start_batch` skips the batches already consumed (resume)."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, start_batch: int = 0, endless: bool = False):
        self.n, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world = rank, world_size
        self.epoch, self.start_batch = epoch, start_batch
        self.endless = endless  # run on through the following epochs (one DataLoader per run)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    def batches_per_epoch(self) -> int:
        return max(1, self.n // self.global_batch)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order: list[int] = []
        while len(order) < max(self.n, self.global_batch):
            order += torch.randperm(self.n, generator=g).tolist()
        return order[: self.batches_per_epoch() * self.global_batch]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.start_batch
        while True:
            order = self.order(epoch)
            for b in range(start, self.batches_per_epoch()):
                chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
                mine = chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
                base = b * self.global_batch + self.rank * self.batch_size
                yield [(i, _item_seed(self.seed, epoch, base + k)) for k, i in enumerate(mine)]
            if not self.endless:
                return
            epoch, start = epoch + 1, 0


def _item_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


def collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([it["image"] for it in items]),  # [B, 3, S, S] in [-1, 1]
        "label": torch.stack([it["label"] for it in items]),  # [B, S, S] int64
        "identity": torch.tensor([it["identity"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        "name": [it["name"] for it in items],
    }
