"""Reading images and masks from users: every entry point (library, CLI, app) decodes through here.

Images come back as RGB uint8 [H, W, 3] with EXIF rotation applied; masks as uint8 index maps
[H, W]. Anything unusable raises InputError with a one-line reason. Decoding has a pixel budget
so a decompression bomb is refused before it is expanded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from idface.errors import InputError
from idface.labels import NUM_CLASSES, PALETTE, color_to_index, validate_label_map

# Largest image we agree to decode (pixels). 40 MP covers any phone photo; larger is refused
# before decoding. Images are downscaled for detection afterwards (see idface.faces).
MAX_PIXELS = 40_000_000
# Smallest side that can hold a usable face.
MIN_SIDE = 32
# Largest mask side we agree to decode. A mask only ever feeds a generator of at most 512x512
# (CelebAMask-HQ's own masks are 512x512); a bigger one is refused from its header, before decode.
MAX_MASK_SIDE = 4096
# A mask for generation must be square; sides may differ by this share (rounding in an editor).
SQUARE_TOLERANCE = 0.01

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


def _open(source: ImageSource, what: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) == 0:
                raise InputError(f"the {what} file is empty")
            return Image.open(io.BytesIO(source))
        path = Path(source)
        if not path.exists():
            raise InputError(f"the {what} file {str(path)!r} does not exist")
        if path.is_dir():
            raise InputError(f"the {what} path {str(path)!r} is a folder, not an image")
        if path.stat().st_size == 0:
            raise InputError(f"the {what} file {path.name!r} is empty")
        return Image.open(path)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"the {what} is not an image file PIL can read (PNG, JPEG, WebP, ...)") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"the {what} is too large to decode safely ({err})") from None
    except OSError as err:
        raise InputError(f"the {what} could not be opened: {err}") from None


def _check_size(img: Image.Image, what: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(
            f"the {what} is {w}x{h} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
            "downscale it and try again"
        )
    if min(w, h) < 1:
        raise InputError(f"the {what} has no pixels ({w}x{h})")


def _decode(img: Image.Image, what: str) -> Image.Image:
    _check_size(img, what)
    try:
        img.load()
    except Image.DecompressionBombError:
        raise InputError(f"the {what} is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"the {what} is corrupt or truncated ({err})") from None
    return img


def to_rgb_array(img: Image.Image, what: str = "image") -> np.ndarray:
    """Any PIL mode -> RGB uint8 [H, W, 3]; alpha is composited on white, 16-bit scaled to 8."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise InputError(f"the {what} holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_image(source: ImageSource, what: str = "image") -> np.ndarray:
    """Decode a user image to RGB uint8 [H, W, 3], honouring EXIF orientation.

    Accepts a path, bytes, a PIL image or an array ([H, W], [H, W, 3] or [H, W, 4], uint8 or
    float in [0, 1]). Raises InputError naming the problem.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, what)
    img = _open(source, what)
    img = _decode(img, what)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block should not make the photo unusable
        pass
    arr = to_rgb_array(img, what)
    if min(arr.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"the {what} is only {arr.shape[1]}x{arr.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed"
        )
    return np.ascontiguousarray(arr)


def _array_to_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"the {what} array must be [H, W], [H, W, 3] or [H, W, 4]; got {tuple(arr.shape)}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise InputError(f"the {what} is {a.shape[1]}x{a.shape[0]} pixels, over the pixel limit")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise InputError(f"the {what} holds NaN or infinite values")
        if f.max(initial=0) <= 1.0:
            f = f * 255.0
        a = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    if min(a.shape[:2]) < MIN_SIDE:
        raise InputError(f"the {what} is only {a.shape[1]}x{a.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    return np.ascontiguousarray(a)


def load_mask(source: ImageSource, size: int | None = None, what: str = "mask") -> np.ndarray:
    """Decode a mask image to a uint8 index map [H, W].

    Accepts an index PNG (mode L or P with values 0..18) or a colour PNG in the official palette.
    A colour mask with antialiased edges or mild compression noise is snapped to the nearest class
    colour only where that colour is unambiguous; pixels that are not close to any class colour
    are an error. When `size` is given, the mask must be square (InputError otherwise: it is never
    stretched) and comes back size x size, resized with nearest neighbour; a colour mask is then
    matched at that size, so the memory it takes does not grow with the file's resolution.
    Masks over MAX_MASK_SIDE pixels a side are refused from the header, before any decode.
    """
    if isinstance(source, np.ndarray):
        arr = np.asarray(source)
        if arr.ndim >= 2:
            check_mask_shape(arr.shape[1], arr.shape[0], size, what)
        if arr.ndim == 2:
            label_map = validate_label_map(arr)
        else:
            if size is not None and arr.ndim == 3 and arr.dtype == np.uint8 and arr.shape[0] > size:
                arr = _nearest_resize(arr, size)
            label_map = snap_colors_to_index(arr, what)
    else:
        img = _open(source, what)
        check_mask_shape(img.width, img.height, size, what)  # header only: nothing decoded yet
        img = _decode(img, what)
        if img.mode == "P" and _palette_is_official(img):
            label_map = validate_label_map(np.asarray(img))  # our own index PNGs
        elif img.mode in ("L", "I", "I;16"):
            label_map = _index_from_gray(np.asarray(img), what)
        else:
            if size is not None and img.width > size:
                img = img.resize((size, size), Image.NEAREST)  # exact colours, no blends
            label_map = snap_colors_to_index(to_rgb_array(img, what), what)
    if size is not None and label_map.shape != (size, size):
        label_map = _nearest_resize(label_map, size)
    return label_map


def check_mask_shape(width: int, height: int, size: int | None, what: str = "mask") -> None:
    """Refuse a mask too large to decode safely, or (when it is for a size x size generator) one
    that is not square. Raises InputError naming the problem."""
    if max(width, height) > MAX_MASK_SIDE:
        raise InputError(
            f"the {what} is {width}x{height} pixels; masks up to {MAX_MASK_SIDE}x{MAX_MASK_SIDE} are "
            "accepted (CelebAMask-HQ masks are 512x512): downscale it with nearest neighbour"
        )
    if min(width, height) < 1:
        raise InputError(f"the {what} has no pixels ({width}x{height})")
    if size is not None and abs(width - height) > SQUARE_TOLERANCE * max(width, height):
        raise InputError(
            f"the {what} is {width}x{height} pixels; a mask must be square (the face is painted on a "
            "square): crop or pad it to a square first"
        )


def _nearest_resize(arr: np.ndarray, size: int) -> np.ndarray:
    """[H, W] or [H, W, C] uint8 -> size x size, nearest neighbour (no new values)."""
    a = np.ascontiguousarray(arr)
    if a.dtype != np.uint8:
        a = a.astype(np.uint8) if a.ndim == 2 else np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] not in (3, 4):
        a = a[..., :3] if a.shape[2] > 3 else np.repeat(a[..., :1], 3, axis=2)
    return np.asarray(Image.fromarray(a).resize((size, size), Image.NEAREST))


def _palette_is_official(img: Image.Image) -> bool:
    pal = img.getpalette() or []
    if len(pal) < 3 * NUM_CLASSES:
        return False
    return bool(np.array_equal(np.array(pal[: 3 * NUM_CLASSES], dtype=np.uint8).reshape(-1, 3), PALETTE))


def _index_from_gray(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.max(initial=0) < NUM_CLASSES:
        return validate_label_map(arr)
    raise InputError(
        f"the {what} is a grayscale image with values up to {int(arr.max())}; an index mask holds class "
        f"indices 0..{NUM_CLASSES - 1} (use an index PNG or a colour PNG in the CelebAMask-HQ palette)"
    )


# Snapping tolerance: a pixel within this Euclidean RGB distance of exactly one class colour is that
# class. Half the smallest distance between two official colours (51) keeps the snap unambiguous.
SNAP_TOLERANCE = 25.0


def snap_colors_to_index(rgb: np.ndarray, what: str = "mask") -> np.ndarray:
    """Colour mask [H, W, 3(+1)] -> index map. Pixels within SNAP_TOLERANCE of a class colour
    snap to it; pixels far from every class colour, or in a class that only occurs as thin
    antialiasing lines, take their trusted neighbours' majority class; a mask that is mostly not
    in the palette is rejected."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise InputError(f"the {what} must be an index or colour image; got shape {tuple(arr.shape)}")
    # Match each distinct colour once, not each pixel: a mask has few colours, so this costs a few
    # bytes per pixel (the packed codes and the inverse index) whatever its resolution.
    rgb8 = np.clip(arr[..., :3], 0, 255).astype(np.uint32)
    codes = (rgb8[..., 0] << 16) | (rgb8[..., 1] << 8) | rgb8[..., 2]  # [H, W]
    del rgb8
    colours, inverse = np.unique(codes.ravel(), return_inverse=True)  # [U], [H*W]
    del codes
    unique_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], -1).astype(np.float32)
    dist = np.linalg.norm(unique_rgb[:, None, :] - PALETTE.astype(np.float32)[None], axis=-1)  # [U, 19]
    nearest = dist.argmin(-1).astype(np.uint8)[inverse].reshape(arr.shape[:2])
    close = (dist.min(-1) <= SNAP_TOLERANCE)[inverse].reshape(arr.shape[:2])
    del inverse
    share = close.mean()
    if share < 0.9:
        raise InputError(
            f"the {what} is not a CelebAMask-HQ mask: only {share:.0%} of its pixels are class colours "
            "(use an index PNG with values 0..18 or a colour PNG in the official palette)"
        )
    # Blends at stroke edges can land exactly on a third class's colour (black + 25 % cloth green
    # is the necklace colour). Such pixels form thin lines: a class all of whose pixels are thin
    # (fewer than 3 of 8 neighbours of the same class) is an artefact, and its pixels are filled
    # from trusted neighbours.
    thin = _same_class_neighbours(nearest) < 3
    real_classes = np.unique(nearest[close & ~thin])
    trusted = close & np.isin(nearest, real_classes)
    if not trusted.any():
        raise InputError(f"the {what} has no solid class regions")
    return fill_uncertain(nearest, trusted)


def _same_class_neighbours(label_map: np.ndarray) -> np.ndarray:
    h, w = label_map.shape
    padded = np.pad(label_map.astype(np.int16), 1, constant_values=-1)
    count = np.zeros((h, w), dtype=np.int8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                count += padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w] == label_map
    return count


def fill_uncertain(label_map: np.ndarray, confident: np.ndarray, max_iter: int = 64) -> np.ndarray:
    """Give each non-confident pixel the most common class among its confident 8-neighbours,
    growing inwards until every pixel is assigned. Returns a new uint8 [H, W] map.

    Votes are counted one class at a time (a running best count and class), so the memory is a few
    bytes per pixel rather than one counter per class per pixel."""
    lm = label_map.astype(np.uint8).copy()
    known = confident.copy()
    h, w = lm.shape
    for _ in range(max_iter):
        if known.all():
            break
        padded_lm = np.pad(lm, 1)
        padded_known = np.pad(known, 1)
        best_count = np.zeros((h, w), dtype=np.int8)
        best_class = np.zeros((h, w), dtype=np.uint8)
        for c in np.unique(lm[known]):
            is_c = padded_known & (padded_lm == c)  # [H+2, W+2]
            count = np.zeros((h, w), dtype=np.int8)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dy or dx:
                        count += is_c[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
            better = count > best_count  # ties keep the lower class index, like argmax
            best_count[better] = count[better]
            best_class[better] = c
        grow = ~known & (best_count > 0)
        if not grow.any():
            break
        lm[grow] = best_class[grow]
        known = known | grow
    return lm


def save_label_map(label_map: np.ndarray, path: str | os.PathLike, preview: bool = True) -> None:
    """Write an index PNG (mode P with the official palette, so viewers show colours while the
    pixel values stay class indices) and, if preview, a colour PNG beside it (NAME_color.png)."""
    lm = validate_label_map(label_map)
    img = Image.frombytes("P", (lm.shape[1], lm.shape[0]), lm.tobytes())
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:NUM_CLASSES] = PALETTE
    img.putpalette(pal.flatten().tolist())
    path = Path(path)
    img.save(path, format="PNG")
    if preview:
        Image.fromarray(PALETTE[lm]).save(path.with_name(path.stem + "_color.png"), format="PNG")
