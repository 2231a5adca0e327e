"""Mask edits a visitor paints, as functions label map -> label map: the augmentations fitting
trains on (so edits stay local after tuning) and the edits the benchmark measures.

Label maps are [H, W] uint8 in the idface.labels order.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from idface.labels import CLASS_INDEX as C

LIPS = (C["u_lip"], C["l_lip"])
BROWS = (C["l_brow"], C["r_brow"])


def _disk(radius: int) -> np.ndarray:
    k = 2 * max(1, radius) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def grow_hair(label: np.ndarray, pixels: int) -> np.ndarray:
    """Hair grows outwards by `pixels` into the background (nothing else is touched)."""
    hair = (label == C["hair"]).astype(np.uint8)
    grown = cv2.dilate(hair, _disk(pixels)).astype(bool)
    out = label.copy()
    out[grown & (label == C["background"])] = C["hair"]
    return out


def shrink_hair(label: np.ndarray, pixels: int) -> np.ndarray:
    """The outer `pixels` of the hair (where it meets the background) become background."""
    hair = label == C["hair"]
    background = cv2.dilate((label == C["background"]).astype(np.uint8), _disk(pixels)).astype(bool)
    out = label.copy()
    out[hair & background] = C["background"]
    return out


def remove_lips(label: np.ndarray) -> np.ndarray:
    out = label.copy()
    out[np.isin(label, LIPS)] = C["skin"]
    return out


def remove_brows(label: np.ndarray) -> np.ndarray:
    out = label.copy()
    out[np.isin(label, BROWS)] = C["skin"]
    return out


def close_mouth(label: np.ndarray) -> np.ndarray:
    """The inner mouth becomes lips: its upper half upper lip, its lower half lower lip (per column)."""
    out = label.copy()
    mouth = label == C["mouth"]
    for x in np.flatnonzero(mouth.any(0)):
        ys = np.flatnonzero(mouth[:, x])
        mid = (ys.min() + ys.max() + 1) / 2
        out[ys[ys < mid], x] = C["u_lip"]
        out[ys[ys >= mid], x] = C["l_lip"]
    return out


def hair_step(label: np.ndarray) -> int:
    """How far hair edits move the hairline: 1/16 of the side (8 px at 128)."""
    return max(2, label.shape[0] // 16)


# name -> edit; the benchmark's four edits first
EDITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "grow hair": lambda lm: grow_hair(lm, hair_step(lm)),
    "remove lips": remove_lips,
    "remove brows": remove_brows,
    "close mouth": close_mouth,
    "shrink hair": lambda lm: shrink_hair(lm, hair_step(lm) // 2),
}


def augmented_masks(label: np.ndarray, rng: np.random.Generator, count: int = 8) -> list[tuple[str, np.ndarray]]:
    """Edited copies of `label` for fitting: every edit that changes this mask, with random sizes
    for the hair edits, and a random pair of edits at once; copies that change nothing are dropped."""
    out = []
    for name, edit in EDITS.items():
        edited = edit(label)
        if (edited != label).any():
            out.append((name, edited))
    step = hair_step(label)
    while len(out) < count and out:
        pixels = int(rng.integers(max(1, step // 3), 2 * step + 1))
        hair = grow_hair(label, pixels) if rng.random() < 0.6 else shrink_hair(label, max(1, pixels // 2))
        second = [remove_lips, remove_brows, close_mouth][int(rng.integers(3))]
        edited = second(hair)
        if (edited != label).any():
            out.append(("hair and face", edited))
        else:
            break
    return out[:count]


def edited_region(before: np.ndarray, after: np.ndarray, margin: int) -> np.ndarray:
    """Pixels whose class changed, grown by `margin` (where an edit may legitimately blend)."""
    changed = (before != after).astype(np.uint8)
    if margin <= 0:
        return changed.astype(bool)
    return cv2.dilate(changed, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)
