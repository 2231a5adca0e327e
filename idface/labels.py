"""The 19 CelebAMask-HQ classes: one place for their order, names and official palette.

Label maps are uint8 index arrays [H, W] everywhere inside idface; colours are for display only
(two official colours differ by 51 in one channel, so a lossy colour mask cannot be snapped back
reliably). Conversions reject unknown indices and colours with a message that names them.
"""

from __future__ import annotations

import numpy as np

from idface.errors import InputError

CLASS_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
NUM_CLASSES = len(CLASS_NAMES)  # 19
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
# The generator's context tokens (and attention-map names): one per class, then the identity token.
IDENTITY_TOKEN = "identity"
TOKEN_NAMES: tuple[str, ...] = CLASS_NAMES + (IDENTITY_TOKEN,)  # [20]

# Human-readable names for legends and pickers (same order).
DISPLAY_NAMES: tuple[str, ...] = (
    "Background", "Skin", "Nose", "Eyeglasses", "Left eye", "Right eye", "Left brow",
    "Right brow", "Left ear", "Right ear", "Mouth (inside)", "Upper lip", "Lower lip", "Hair",
    "Hat", "Earring", "Necklace", "Neck", "Clothes",
)

# Official CelebAMask-HQ colours, same order: [19, 3] uint8.
PALETTE = np.array(
    [
        [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204],
        [0, 255, 255], [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0],
        [255, 255, 0], [0, 0, 153], [0, 0, 204], [255, 51, 153], [0, 204, 204], [0, 51, 0],
        [255, 153, 51], [0, 204, 0],
    ],
    dtype=np.uint8,
)

# Side convention (official CelebAMask-HQ masks, BiSeNet, every model trained on them): l_eye,
# l_brow and l_ear are the SUBJECT's own left, which lies on the IMAGE's RIGHT (official masks:
# l_eye centroid x 317-321 of 512, r_eye 192-196). In a mirrored image the subject's left moves
# to the image's left, so a horizontal flip must swap the partners to keep the convention true.
SUBJECT_LEFT_IS_IMAGE_RIGHT = True

# Left/right partners, for horizontal flips (l_eye <-> r_eye, l_brow <-> r_brow, l_ear <-> r_ear).
FLIP_PERMUTATION = np.arange(NUM_CLASSES)
for _a, _b in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
    FLIP_PERMUTATION[CLASS_INDEX[_a]], FLIP_PERMUTATION[CLASS_INDEX[_b]] = CLASS_INDEX[_b], CLASS_INDEX[_a]

# facexlib's BiSeNet order -> CelebAMask-HQ index (ParseNet already uses the CelebAMask-HQ order).
BISENET_TO_CELEBAMASK = np.array(
    [0, 1, 6, 7, 4, 5, 3, 8, 9, 15, 2, 10, 11, 12, 17, 16, 18, 13, 14], dtype=np.uint8
)


def class_index(name: str) -> int:
    """Index of a class by its short name ('hair') or display name ('Hair')."""
    key = name.strip()
    if key in CLASS_INDEX:
        return CLASS_INDEX[key]
    for i, display in enumerate(DISPLAY_NAMES):
        if display.lower() == key.lower():
            return i
    raise InputError(f"unknown class {name!r}; known classes: {', '.join(CLASS_NAMES)}")


def validate_label_map(label_map: np.ndarray) -> np.ndarray:
    """Return label_map as a uint8 [H, W] array, or raise InputError naming the problem."""
    arr = np.asarray(label_map)
    if arr.ndim != 2:
        raise InputError(f"a label map must be 2-D [H, W]; got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError("the label map is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError("a label map must hold integer class indices")
    bad = np.unique(arr[(arr < 0) | (arr >= NUM_CLASSES)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8])
        raise InputError(
            f"the label map holds unknown class indices {shown}; valid indices are 0..{NUM_CLASSES - 1}"
        )
    return arr.astype(np.uint8, copy=False)


def index_to_color(label_map: np.ndarray) -> np.ndarray:
    """[H, W] class indices -> [H, W, 3] uint8 colours in the official palette."""
    return PALETTE[validate_label_map(label_map)]


def color_to_index(color_map: np.ndarray) -> np.ndarray:
    """[H, W, 3] official-palette colours -> [H, W] uint8 indices; any other colour is an error.

    Exact matching only: antialiased or lossy-compressed masks must be snapped by the caller
    (see idface.maskio) before they reach this function.
    """
    arr = np.asarray(color_map)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise InputError(f"a colour mask must be [H, W, 3]; got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr[..., :3])):
            raise InputError("a colour mask must hold finite numbers 0..255")
        if arr[..., :3].size and (arr[..., :3].min() < 0 or arr[..., :3].max() > 255):
            raise InputError("a colour mask's channels must be 0..255")  # else (0, 256, 0) aliases (1, 0, 0)
    rgb = arr[..., :3].astype(np.int32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    palette_codes = (PALETTE[:, 0].astype(np.int32) << 16) | (PALETTE[:, 1].astype(np.int32) << 8) | PALETTE[:, 2]
    lookup = {int(c): i for i, c in enumerate(palette_codes)}
    uniq, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in lookup]
    if unknown:
        shown = ", ".join(f"({u >> 16},{(u >> 8) & 255},{u & 255})" for u in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(
            f"the colour mask holds {len(unknown)} colour(s) that are not CelebAMask-HQ class colours: "
            f"{shown}{more}"
        )
    mapped = np.array([lookup[int(u)] for u in uniq], dtype=np.uint8)
    return mapped[inverse.reshape(codes.shape)]


def index_to_onehot(label_map: np.ndarray) -> np.ndarray:
    """[H, W] indices -> [19, H, W] float32 one-hot."""
    lm = validate_label_map(label_map)
    return (np.arange(NUM_CLASSES, dtype=np.uint8)[:, None, None] == lm[None]).astype(np.float32)


def onehot_to_index(onehot: np.ndarray) -> np.ndarray:
    """[19, H, W] one-hot (or scores) -> [H, W] uint8 indices (argmax over classes)."""
    arr = np.asarray(onehot)
    if arr.ndim != 3 or arr.shape[0] != NUM_CLASSES:
        raise InputError(f"a one-hot mask must be [{NUM_CLASSES}, H, W]; got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise InputError("the one-hot mask holds NaN or infinite values")
    return arr.argmax(axis=0).astype(np.uint8)


def flip_label_map(label_map: np.ndarray) -> np.ndarray:
    """Mirror a label map left-right, swapping left/right classes (so l_* stays the subject's left,
    on the image's right)."""
    lm = validate_label_map(label_map)
    return FLIP_PERMUTATION.astype(np.uint8)[lm[:, ::-1]]
