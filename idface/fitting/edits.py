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


def remove_classes(label: np.ndarray, classes) -> np.ndarray:
    """The given classes become skin."""
    out = label.copy()
    out[np.isin(label, tuple(classes))] = C["skin"]
    return out


def grow_class(label: np.ndarray, cls: int, pixels: int) -> np.ndarray:
    """Class `cls` grows by `pixels` into the skin around it (thicker brows, bigger nose, ...)."""
    grown = cv2.dilate((label == cls).astype(np.uint8), _disk(pixels)).astype(bool)
    out = label.copy()
    out[grown & (label == C["skin"])] = cls
    return out


# Edits of other kinds than those fitting trains on (see augmented_masks): the benchmark also
# measures these, to show that locality is learnt and not only the trained edits.
UNTRAINED_EDITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "thicker brows": lambda lm: grow_class(grow_class(lm, C["l_brow"], max(1, lm.shape[0] // 64)),
                                           C["r_brow"], max(1, lm.shape[0] // 64)),
    "bigger nose": lambda lm: grow_class(lm, C["nose"], max(1, lm.shape[0] // 40)),
    "fuller lips": lambda lm: grow_class(grow_class(lm, C["u_lip"], max(1, lm.shape[0] // 64)),
                                         C["l_lip"], max(1, lm.shape[0] // 64)),
}


def random_edit(label: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One random edit of the kinds a visitor paints most: the hairline moved (by a random amount,
    out or in), lips or brows (one or both) removed, the mouth closed, or a hairline move together
    with one of the others."""
    step = hair_step(label)
    face_edits = [("remove lips", remove_lips), ("remove brows", remove_brows),
                  ("remove one brow", lambda lm: remove_classes(lm, (BROWS[int(rng.integers(2))],))),
                  ("close mouth", close_mouth)]
    kind = int(rng.integers(3))
    edited, names = label, []
    if kind in (0, 2):                                          # the hairline
        if rng.random() < 0.65:
            edited = grow_hair(edited, int(rng.integers(max(1, step // 4), 2 * step + 1)))
            names.append("grow hair")
        else:
            edited = shrink_hair(edited, int(rng.integers(1, step + 1)))
            names.append("shrink hair")
    if kind in (1, 2):                                          # a feature
        name, edit = face_edits[int(rng.integers(len(face_edits)))]
        edited = edit(edited)
        names.append(name)
    return " + ".join(names), edited


def random_blob_edit(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A generic local change, of no particular kind: a random disk (radius 1/64 to 1/16 of the
    side) somewhere on the head takes the class found a little way off (a class boundary moved,
    a feature grown, shrunk or removed there). For the mask embedder's locality, not a named edit."""
    side = label.shape[0]
    head = np.flatnonzero((label != C["background"]).ravel())
    if head.size == 0:
        return label.copy()
    y, x = divmod(int(head[int(rng.integers(head.size))]), side)
    radius = int(rng.integers(max(1, side // 64), max(2, side // 16) + 1))
    dy, dx = rng.integers(-2 * radius, 2 * radius + 1, size=2)
    source = label[int(np.clip(y + dy, 0, side - 1)), int(np.clip(x + dx, 0, side - 1))]
    disk = np.zeros(label.shape, np.uint8)
    cv2.circle(disk, (x, y), radius, 1, -1)
    out = label.copy()
    out[disk.astype(bool)] = source
    return out


def augmented_masks(label: np.ndarray, rng: np.random.Generator, count: int = 10) -> list[tuple[str, np.ndarray]]:
    """`count` edited copies of `label` for fitting: first each kind a visitor paints most that
    changes this mask (the hairline out and in by a random amount, lips, brows, one brow, the mouth
    closed), then random_edit's random ones and combinations; copies that change nothing or repeat
    another are dropped (fewer when the mask allows few edits)."""
    step = hair_step(label)
    kinds = [("grow hair", lambda lm: grow_hair(lm, int(rng.integers(max(1, step // 4), 2 * step + 1)))),
             ("shrink hair", lambda lm: shrink_hair(lm, int(rng.integers(1, step + 1)))),
             ("remove lips", remove_lips), ("remove brows", remove_brows),
             ("remove one brow", lambda lm: remove_classes(lm, (BROWS[int(rng.integers(2))],))),
             ("close mouth", close_mouth)]
    out, seen = [], set()

    def add(name: str, edited: np.ndarray) -> None:
        key = edited.tobytes()
        if len(out) < count and (edited != label).any() and key not in seen:
            seen.add(key)
            out.append((name, edited))

    for name, edit in kinds:
        add(name, edit(label))
    for _ in range(6 * count):
        if len(out) >= count:
            break
        add(*random_edit(label, rng))
    return out


def edited_region(before: np.ndarray, after: np.ndarray, margin: int) -> np.ndarray:
    """Pixels whose class changed, grown by `margin` (where an edit may legitimately blend)."""
    changed = (before != after).astype(np.uint8)
    if margin <= 0:
        return changed.astype(bool)
    return cv2.dilate(changed, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)
