"""Alignment: a similarity transform from five facial landmarks to a consumer's template.

Landmark order everywhere in idface (the RetinaFace / ArcFace convention, image coordinates):
  0 eye on the image's left, 1 eye on the image's right, 2 nose tip,
  3 mouth corner on the image's left, 4 mouth corner on the image's right.
Pixel coordinates put pixel centres on integers (OpenCV's convention).

Templates (output side -> where the five points land):
- "generator" (256 or 512): the CelebA-HQ / FFHQ crop rule applied to dlib's mean face. The rule
  (Karras et al.): with eye centre e, eye-to-eye vector d and eye-to-mouth vector m, the crop is a
  square of side 2 * max(2.0 |d|, 1.8 |m|) centred at e + 0.1 m. On the mean face this puts the
  eyes a quarter of the width apart at 47 % of the height and the mouth at 74 %: the whole head,
  hair and some neck are in frame, as in CelebAMask-HQ. The generator works in this frame.
- "arcface" (112): InsightFace's ArcFace template, the one IR-SE50 was trained on.
- "dlib" (150): dlib's get_face_chip convention with padding 0.25 (dlib's mean face scaled into
  the chip, registered against dlib's own chips to within ~0.3 px), the input of dlib's ResNet. Faces found by dlib carry dlib's own five points
  (two corners per eye, nose base), which are matched to the same mean face exactly as dlib does.

`align_face` returns the crop and a FaceTransform (matrix and inverse) for pasting results back;
`frame_to_template` is the differentiable (grid_sample) warp from the generator frame to a
recognizer's template, for images the generator made, which already live in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from idface.errors import InputError

# dlib's mean face (points 17..67 of the 68-point iBUG layout, normalised to [0, 1]), as used by
# dlib's get_face_chip_details. Only the points below are needed.
_DLIB_MEAN = {
    # 68-point index: (x, y)
    33: (0.490127, 0.628106),  # nose base
    30: (0.490127, 0.515625),  # nose tip
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758),
    45: (0.858516, 0.216423), 46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    48: (0.254149, 0.780233), 54: (0.726104, 0.780233),  # mouth corners
}


def _mean(*indices: int) -> np.ndarray:
    return np.mean([_DLIB_MEAN[i] for i in indices], axis=0)


# The five standard points on dlib's mean face (unit square): eye centres = mean of the six eye
# contour points, nose tip, mouth corners.
MEAN_FACE_5 = np.array(
    [_mean(36, 37, 38, 39, 40, 41), _mean(42, 43, 44, 45, 46, 47), _mean(30), _mean(48), _mean(54)],
    dtype=np.float64,
)
# dlib's 5-point model's own points on the same mean face, in its part order:
# 0/1 outer/inner corner of the image-right eye, 2/3 outer/inner corner of the image-left eye, 4 nose base.
MEAN_FACE_DLIB5 = np.array([_DLIB_MEAN[i] for i in (45, 42, 36, 39, 33)], dtype=np.float64)

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

DLIB_CHIP_PADDING = 0.25


def celebahq_crop(points5: np.ndarray) -> tuple[np.ndarray, float]:
    """CelebA-HQ / FFHQ crop rule on five points -> (centre [2], half side)."""
    eye_centre = (points5[0] + points5[1]) / 2
    eye_to_eye = points5[1] - points5[0]
    eye_to_mouth = (points5[3] + points5[4]) / 2 - eye_centre
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    return eye_centre + 0.1 * eye_to_mouth, float(half)


@dataclass(frozen=True)
class Template:
    """Where the five standard points (and optionally dlib's five) land in a size x size crop."""

    name: str
    size: int
    points: np.ndarray  # [5, 2] standard order, output pixels
    dlib5_points: np.ndarray | None = None  # [5, 2] dlib part order, output pixels


@lru_cache(maxsize=None)
def get_template(name: str, size: int | None = None) -> Template:
    """Template by name: "generator" (size 256 or 512, default 256), "arcface" (112), "dlib" (150)."""
    if name == "generator":
        size = 256 if size is None else int(size)
        if size < 32:
            raise InputError(f"generator frame size must be at least 32; got {size}")
        centre, half = celebahq_crop(MEAN_FACE_5)
        to_px = lambda p: ((p - centre) / (2 * half) + 0.5) * size - 0.5  # noqa: E731
        return Template(name, size, to_px(MEAN_FACE_5), to_px(MEAN_FACE_DLIB5))
    if name == "arcface":
        if size not in (None, 112):
            raise InputError("the ArcFace template is 112x112")
        return Template(name, 112, ARCFACE_112.copy())
    if name == "dlib":
        size = 150 if size is None else int(size)
        pad = DLIB_CHIP_PADDING
        # dlib places the mean face at (padding + mean) / (2 padding + 1) * size and then maps the
        # template's centre (size / 2) to the chip's centre pixel ((size - 1) / 2), scaling by
        # size / (size - 1). Measured against dlib.get_face_chip by ECC registration on the bundled
        # photos (scale 0.994, shift ~1 px); it cuts the descriptor gap to dlib's own chip by half.
        to_px = lambda p: ((pad + p) / (2 * pad + 1) * size - size / 2) * size / (size - 1) + (size - 1) / 2  # noqa: E731
        return Template(name, size, to_px(MEAN_FACE_5), to_px(MEAN_FACE_DLIB5))
    raise InputError(f"unknown alignment template {name!r}; known: generator, arcface, dlib")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    src [N, 2] onto dst [N, 2] (Umeyama 1991). Returns a [2, 3] matrix for cv2.warpAffine."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InputError(f"similarity_transform needs two [N>=2, 2] point sets; got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise InputError("the landmarks are degenerate (all at one point)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / var_s
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a [2, 3] affine matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


@dataclass(frozen=True)
class FaceTransform:
    """Image -> aligned crop. `matrix` [2, 3] maps image pixels to crop pixels; keep it to paste
    results back into the photo (`paste_back`)."""

    matrix: np.ndarray
    size: int
    image_size: tuple[int, int]  # (height, width) of the photo
    template: str

    @property
    def inverse(self) -> np.ndarray:
        return invert_affine(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        return apply_affine(self.matrix, points)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        return apply_affine(self.inverse, points)


def _warp(rgb: np.ndarray, matrix: np.ndarray, size: int, border: int) -> np.ndarray:
    """warpAffine with anti-aliasing: when the crop shrinks the face a lot, first cut the region the
    crop reads (bounded memory on huge photos) and area-downscale it, then warp."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.75:
        inv = invert_affine(matrix)
        corners = apply_affine(inv, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
        h, w = rgb.shape[:2]
        margin = 4 / scale
        x0 = int(max(0, np.floor(corners[:, 0].min() - margin)))
        y0 = int(max(0, np.floor(corners[:, 1].min() - margin)))
        x1 = int(min(w, np.ceil(corners[:, 0].max() + margin)))
        y1 = int(min(h, np.ceil(corners[:, 1].max() + margin)))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = rgb[y0:y1, x0:x1]
            factor = scale / 0.8  # leave the final warp a mild shrink
            new_w = max(2, int(round(region.shape[1] * factor)))
            new_h = max(2, int(round(region.shape[0] * factor)))
            small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / region.shape[1], new_h / region.shape[0]
            # crop pixel <- image pixel <- small pixel: image = (small + 0.5) / f - 0.5 + offset
            small_to_image = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0]])
            full = np.vstack([matrix, [0, 0, 1]]) @ np.vstack([small_to_image, [0, 0, 1]])
            return cv2.warpAffine(small, full[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def estimate_transform(landmarks: np.ndarray, template: Template, dlib5: np.ndarray | None = None) -> np.ndarray:
    """Image -> template [2, 3]. dlib's own five points are used with dlib's template convention
    when both are available (this is what dlib's get_face_chip does)."""
    if dlib5 is not None and template.dlib5_points is not None:
        return similarity_transform(dlib5, template.dlib5_points)
    return similarity_transform(landmarks, template.points)


def align_face(
    rgb: np.ndarray,
    landmarks: np.ndarray,
    template: str = "generator",
    size: int | None = None,
    dlib5: np.ndarray | None = None,
    border: int = cv2.BORDER_REFLECT_101,
) -> tuple[np.ndarray, FaceTransform]:
    """Warp a photo [H, W, 3] uint8 to a template crop [S, S, 3] uint8 -> (crop, transform).

    landmarks: [5, 2] standard order (see module doc). dlib5: dlib's five points, if known.
    Areas outside the photo are filled by reflection (as the CelebA-HQ crops were padded).
    """
    tpl = get_template(template, size)
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise InputError(f"align_face needs [5, 2] landmarks; got shape {lm.shape}")
    matrix = estimate_transform(lm, tpl, dlib5)
    crop = _warp(np.ascontiguousarray(rgb), matrix, tpl.size, border)
    return crop, FaceTransform(matrix, tpl.size, (int(rgb.shape[0]), int(rgb.shape[1])), tpl.name)


def paste_back(photo: np.ndarray, crop: np.ndarray, transform: FaceTransform, mask: np.ndarray | None = None,
               feather: float = 0.05) -> np.ndarray:
    """Put an edited crop [S, S, 3] back into the photo it was cut from.

    mask [S, S] (0..1 or bool) selects what to paste (default: the whole crop); its edge is
    feathered by `feather` x S pixels so the seam does not show. Returns a new uint8 photo.
    """
    h, w = photo.shape[:2]
    s = transform.size
    if crop.shape[:2] != (s, s):
        crop = cv2.resize(crop, (s, s), interpolation=cv2.INTER_LINEAR)
    weight = np.ones((s, s), np.float32) if mask is None else np.asarray(mask, np.float32)
    if mask is None or feather > 0:
        border = max(1, int(round(feather * s)))
        inner = np.zeros((s, s), np.float32)
        inner[border:-border, border:-border] = 1
        weight = weight * cv2.GaussianBlur(inner, (0, 0), border / 2)
        if mask is not None:
            weight = cv2.GaussianBlur(weight, (0, 0), border / 2)
    inv = transform.inverse
    back = cv2.warpAffine(crop, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(weight, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    out = photo.astype(np.float32) * (1 - alpha) + back.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Differentiable warp: generator frame -> recognizer template


def frame_to_template_matrix(frame_size: int, template: str, template_size: int | None = None) -> np.ndarray:
    """[2, 3] pixel map from the generator frame (frame_size) to a template crop."""
    src = get_template("generator", frame_size)
    dst = get_template(template, template_size)
    return similarity_transform(src.points, dst.points)


def _pixel_to_norm(size: int) -> np.ndarray:
    # grid_sample, align_corners=False: normalised = (2 * pixel + 1) / size - 1
    return np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1], [0, 0, 1]])


def frame_to_template(images: torch.Tensor, template: str, template_size: int | None = None) -> torch.Tensor:
    """Warp generator-frame images [B, C, H, H] to a template crop [B, C, S, S], differentiably.

    Uses an anti-aliasing resize (bilinear, antialias) before grid_sample when the template shrinks
    the face by more than 25 %. Outside the frame: border replication.
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise InputError(f"frame_to_template needs square images [B, C, H, H]; got {tuple(images.shape)}")
    frame = int(images.shape[-1])
    tpl = get_template(template, template_size)
    matrix = frame_to_template_matrix(frame, template, template_size)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.75:
        frame = max(tpl.size, int(round(frame * scale / 0.8)))
        images = F.interpolate(images, size=(frame, frame), mode="bilinear", align_corners=False, antialias=True)
        matrix = frame_to_template_matrix(frame, template, template_size)
    # output normalised -> output pixel -> frame pixel -> frame normalised
    out_to_in = np.vstack([invert_affine(matrix), [0, 0, 1]])
    theta = _pixel_to_norm(frame) @ out_to_in @ np.linalg.inv(_pixel_to_norm(tpl.size))
    theta_t = torch.as_tensor(theta[:2], dtype=images.dtype, device=images.device).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta_t, [images.shape[0], images.shape[1], tpl.size, tpl.size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
