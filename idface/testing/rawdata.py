"""A tiny data set in the CelebAMask-HQ release layout, written by the tests.

Masks are procedural faces (ellipses for skin, hair, eyes, brows, nose, lips, neck, cloth; every
image its own proportions and position); images are painted from the mask with one colour per
class plus a smooth shading and a little noise, so a generator can learn the mapping quickly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from idface.labels import CLASS_INDEX, CLASS_NAMES

MASK_SIZE = 128  # the release's masks are 512; small here, prepare resizes anyway
IMAGE_SIZE = 160  # the release's photos are 1024


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def procedural_parts(rng: np.random.Generator, size: int = MASK_SIZE) -> dict[str, np.ndarray]:
    """part name -> bool mask, overlapping like the release's per-part annotations."""
    s = size
    cx = s / 2 + rng.uniform(-0.06, 0.06) * s
    cy = s * 0.47 + rng.uniform(-0.04, 0.04) * s
    fw, fh = rng.uniform(0.24, 0.3) * s, rng.uniform(0.3, 0.36) * s
    parts = {
        "cloth": _ellipse(s, s, s * 1.08, cx, s * 0.25, s * 0.5),
        "neck": _ellipse(s, s, cy + fh * 1.15, cx, fh * 0.45, fw * 0.5),
        "hair": _ellipse(s, s, cy - fh * 0.25, cx, fh * 1.05, fw * 1.2),
        "skin": _ellipse(s, s, cy, cx, fh, fw),
        # official side convention: l_* is the subject's left = the image's right
        "l_ear": _ellipse(s, s, cy, cx + fw * 1.02, fh * 0.2, fw * 0.12),
        "r_ear": _ellipse(s, s, cy, cx - fw * 1.02, fh * 0.2, fw * 0.12),
        "nose": _ellipse(s, s, cy + fh * 0.12, cx, fh * 0.2, fw * 0.12),
        "u_lip": _ellipse(s, s, cy + fh * 0.48, cx, fh * 0.05, fw * 0.32),
        "l_lip": _ellipse(s, s, cy + fh * 0.58, cx, fh * 0.06, fw * 0.3),
    }
    ex, ey = fw * rng.uniform(0.38, 0.45), cy - fh * 0.2
    for side, sign in (("l", 1), ("r", -1)):
        parts[f"{side}_eye"] = _ellipse(s, s, ey, cx + sign * ex, fh * 0.06, fw * 0.16)
        parts[f"{side}_brow"] = _ellipse(s, s, ey - fh * 0.17, cx + sign * ex, fh * 0.04, fw * 0.2)
    if rng.random() < 0.5:
        parts["mouth"] = _ellipse(s, s, cy + fh * 0.53, cx, fh * 0.03, fw * 0.22)
    parts["hair"] &= ~_ellipse(s, s, cy + fh * 0.1, cx, fh * 0.95, fw * 0.98)
    return parts


def merged(parts: dict[str, np.ndarray]) -> np.ndarray:
    lm = np.zeros(next(iter(parts.values())).shape, np.uint8)
    for cls, name in enumerate(CLASS_NAMES):
        if name in parts:
            lm[parts[name]] = cls
    return lm


def paint(label_map: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    base = np.array([[40, 40, 60], [220, 180, 150], [200, 150, 120], [30, 30, 30], [60, 40, 30],
                     [60, 40, 30], [80, 50, 30], [80, 50, 30], [210, 170, 140], [210, 170, 140],
                     [90, 20, 30], [180, 80, 80], [170, 70, 70], [70, 45, 25], [30, 90, 160],
                     [230, 200, 40], [230, 200, 40], [200, 160, 130], [40, 100, 60]], np.float32)
    tint = rng.uniform(0.8, 1.2, size=(1, 3)).astype(np.float32)
    colours = np.clip(base * tint, 0, 255)
    lm = np.asarray(Image.fromarray(label_map).resize((size, size), Image.Resampling.NEAREST))
    img = colours[lm]
    yy = np.linspace(0.85, 1.1, size, dtype=np.float32)[:, None, None]
    img = img * yy + rng.normal(0, 3, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_raw_dataset(root: Path, n: int = 8, seed: int = 0, corrupt: tuple[int, ...] = (),
                      start: int = 0) -> Path:
    """RAW/CelebA-HQ-img/<i>.jpg + RAW/CelebAMask-HQ-mask-anno/<i//2000>/<i:05d>_<part>.png
    (+ mapping and identity files: image i has identity 100 + i // 2). Images in `corrupt` are
    written as truncated JPEG files."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    mapping = ["idx orig_idx orig_file"]
    identities = []
    for i in range(start, start + n):
        parts = procedural_parts(rng)
        folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for name, m in parts.items():
            Image.fromarray((m * 255).astype(np.uint8)).save(folder / f"{i:05d}_{name}.png")
        img_path = root / "CelebA-HQ-img" / f"{i}.jpg"
        Image.fromarray(paint(merged(parts), rng)).save(img_path, quality=95)
        if i in corrupt:
            data = img_path.read_bytes()
            img_path.write_bytes(data[: len(data) // 3])
        orig = f"{200000 + i:06d}.jpg"
        mapping.append(f"{i} {200000 + i} {orig}")
        identities.append(f"{orig} {100 + i // 2}")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    (root / "identity_CelebA.txt").write_text("\n".join(identities) + "\n")
    return root


__all__ = ["write_raw_dataset", "procedural_parts", "merged", "CLASS_INDEX"]
