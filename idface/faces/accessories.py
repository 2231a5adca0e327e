"""Eyeglasses and hats for the offline parsers, from edges and smoothness on the 512 generator frame.

Both are painted only when the cues are clear; otherwise the pixels keep the class underneath
(skin for eyeglasses, hair for a hat), as before. Thresholds are in the 512 frame, where the eyes
are about 128 px apart; they were set between the one photo with eyeglasses and a hat among the
bundled ones (grace_hopper) and the five without, with a margin of about two on each cue, so they
are a small honest check, not a calibrated detector (scripts/bench_parser.py).

Eyeglasses (the classic nose-bridge edge test, with a second cue under each eye):
- bridge: in the box between the inner eye corners, from 0.35 eye distances above the eye line to
  0.15 below, most columns cross a strong horizontal edge (the frame's bridge); a bare nose bridge
  is smooth there;
- lower rims: below each eye (0.22-0.6 eye distances), most columns across the eye cross a strong
  horizontal edge (the lens's lower rim); both eyes must show it;
- shape, where both cues hold: each lens is a rounded box from the bridge to its outer rim (the
  first column, 0.45-0.95 eye distances out from the eye, whose vertical edges are at least 0.6 of the
  strongest there: the rim before the face's own edge), from the frame's upper rim
  (the strongest horizontal edge 0.12-0.45 above the eye) to the lower rim found above; the
  bridge joins them. CelebAMask-HQ's eye_g covers frame and lenses; eyes and brows stay on top.

Hat (a brim across the forehead), from the photo alone (not from the labels: an earlier version
read the forehead skin's upper border, which the mesh parser's own forehead reach cuts straight):
- in each column of the forehead's middle 70 %, between 1.3 eye distances above the mesh's top
  and the brows, the lowest row with a lightness step of BRIM_STEP across 2x4 rows; at least
  BRIM_COLUMNS of the columns have one;
- those rows lie on one straight line (BRIM_INLIERS of them within 0.03 eye distances, mean
  deviation under BRIM_STRAIGHTNESS; real hairlines measured inliers <= 0.48 and deviation >=
  0.068 on the bundled photos, grace_hopper's brim 0.95 and 0.016), nearly level; and
- the band above the line (BRIM_BAND eye distances) is smooth: its median fine texture
  (|L - blurred L|) under BRIM_SMOOTHNESS of the face's (hair measured >= 0.98 of it, the brim 0.29).
Then every hair pixel above that line, extended across the frame, becomes hat (the hair seen
below the brim stays hair; the mesh parser does this in label_regions).
"""

from __future__ import annotations

import cv2
import numpy as np

BRIDGE_EDGE = 18.0  # median over the bridge box's columns of their strongest |dL/dy| (bare: <= 10.4, grace 31.9)
LOWER_RIM_EDGE = 25.0  # the same under each eye (bare: <= 18.5, grace 40.7 and 42.9)
BRIM_STEP, BRIM_STEP_REACH = 50.0, 4  # a lightness step (Lab L, 0-255) this big between rows 2x4 apart
BRIM_COLUMNS = 0.9  # of the forehead's columns must cross such a step (bare foreheads: 0.0-1.0)
BRIM_INLIERS = 0.8  # of them within 0.03 eye distances of one straight line (hairlines: <= 0.48, brim 0.95)
BRIM_STRAIGHTNESS = 0.035  # mean deviation from that line, eye distances (hairlines: >= 0.068, brim 0.016)
BRIM_SMOOTHNESS = 0.5  # fine texture above the line / the face's (hair: >= 0.98, brim 0.29)
BRIM_BAND = 0.3  # eye distances above the line that must be smooth


def _gradients(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[S, S, 3] uint8 RGB -> (dL/dx, dL/dy) [S, S] float32 on the lightly blurred Lab lightness."""
    light = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32), (0, 0), 1.0)
    return cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3) / 4, cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3) / 4


def _box(shape, x0, x1, y0, y1) -> tuple[slice, slice]:
    h, w = shape
    return slice(int(np.clip(y0, 0, h - 1)), int(np.clip(y1, 1, h))), slice(int(np.clip(x0, 0, w - 1)), int(np.clip(x1, 1, w)))


def _rounded_box(shape, x0, x1, y0, y1, power: float = 2.5) -> np.ndarray:
    """[S, S] bool: the superellipse |u|^p + |v|^p <= 1 inscribed in the box (a lens outline)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, max(abs(x1 - x0) / 2, 1), max(abs(y1 - y0) / 2, 1)
    return np.abs((xx - cx) / ax) ** power + np.abs((yy - cy) / ay) ** power <= 1


def find_eyeglasses(frame: np.ndarray, eye_image_left: np.ndarray, eye_image_right: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame [S, S, 3] uint8, the contours [N, 2] (x, y) of the eye on the image's left and of the
    one on its right (any landmark scheme) -> ([S, S] bool eyeglasses: frame and lenses, [S, S] bool
    the part across the nose bridge), or None when the bridge and lower-rim cues are not both
    clear (see the module docstring)."""
    shape = frame.shape[:2]
    gx, gy = np.abs(np.asarray(_gradients(frame)))  # [2, S, S]
    centres = eye_image_left.mean(0), eye_image_right.mean(0)
    eye_dist = float(np.linalg.norm(centres[1] - centres[0]))
    if eye_dist < 8:
        return None
    eye_y = (centres[0][1] + centres[1][1]) / 2
    inner_left, inner_right = eye_image_left[:, 0].max(), eye_image_right[:, 0].min()
    bridge = gy[_box(shape, inner_left + 0.08 * eye_dist, inner_right - 0.08 * eye_dist,
                     eye_y - 0.35 * eye_dist, eye_y + 0.15 * eye_dist)]
    if bridge.size == 0 or np.median(bridge.max(0)) < BRIDGE_EDGE:
        return None
    mid_x = (inner_left + inner_right) / 2
    glasses = np.zeros(shape, bool)
    tops = []
    for contour, centre, outward in ((eye_image_left, centres[0], -1), (eye_image_right, centres[1], 1)):
        x0, x1 = contour[:, 0].min(), contour[:, 0].max()
        below = gy[_box(shape, x0, x1, centre[1] + 0.22 * eye_dist, centre[1] + 0.6 * eye_dist)]
        if below.size == 0 or np.median(below.max(0)) < LOWER_RIM_EDGE:
            return None
        y_low = centre[1] + 0.22 * eye_dist + float(below.mean(1).argmax())  # the lower rim's row
        above = gy[_box(shape, x0, x1, centre[1] - 0.45 * eye_dist, centre[1] - 0.12 * eye_dist)]
        y_top = centre[1] - 0.45 * eye_dist + float(above.mean(1).argmax())  # the upper rim's row
        xa, xb = sorted((centre[0] + outward * 0.45 * eye_dist, centre[0] + outward * 0.95 * eye_dist))
        profile = gx[_box(shape, xa, xb, y_top, y_low)].mean(0)  # [columns] outward from the eye
        if outward < 0:
            profile = profile[::-1]
        first = int(np.argmax(profile >= 0.6 * profile.max()))  # the nearest strong column: the rim,
        x_out = centre[0] + outward * (0.45 * eye_dist + first)  # not the face's edge beyond it
        pad = 0.04 * eye_dist  # the frame's own thickness beyond the edges found
        x_in = mid_x - outward * 0.08 * eye_dist
        glasses |= _rounded_box(shape, x_in, x_out + outward * pad, y_top - pad, y_low + pad)
        tops.append(y_top)
    y_bridge = min(tops) - 0.04 * eye_dist
    bridge_box = np.zeros(shape, bool)
    bridge_box[_box(shape, mid_x - 0.2 * eye_dist, mid_x + 0.2 * eye_dist, y_bridge, y_bridge + 0.22 * eye_dist)] = True
    return glasses | bridge_box, bridge_box


def find_brim(frame: np.ndarray, face: np.ndarray, face_x: tuple[float, float], top_y: float, brow_y: float,
               eye_dist: float) -> np.ndarray | None:
    """Frame [S, S, 3] uint8, the face outline [S, S] bool and its x range, the top of the face
    mesh (mid-forehead) and of the brows (y) -> the hat's brim as a row per frame column [S]
    (float y; a straight line across the frame), or None when there is no brim (module docstring)."""
    h, w = face.shape
    light = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    texture = np.abs(light - cv2.GaussianBlur(light, (0, 0), 2.0))  # [S, S] fine detail
    k = BRIM_STEP_REACH
    smooth = cv2.blur(light, (3, 5))
    step = np.zeros_like(smooth)
    step[k:-k] = smooth[2 * k:] - smooth[:-2 * k]  # [S, S] lightness below minus above, 2k rows apart
    face_w = face_x[1] - face_x[0]
    cols = np.arange(int(face_x[0] + 0.15 * face_w), int(face_x[1] - 0.15 * face_w))
    y0, y1 = max(k, int(top_y - 1.3 * eye_dist)), min(h - k, int(brow_y - 0.1 * eye_dist))
    if len(cols) < 10 or y1 - y0 < 4:
        return None
    strong = np.abs(step[y0:y1, cols]) >= BRIM_STEP  # [rows, cols]
    if strong.any(0).mean() < BRIM_COLUMNS:
        return None
    rows = (y1 - 1 - np.argmax(strong[::-1], 0)).astype(np.float64)  # the lowest strong step per column
    line = np.polyfit(cols, rows, 1)
    near = np.abs(rows - np.polyval(line, cols)) < 0.03 * eye_dist
    if near.sum() < 3:
        return None
    line = np.polyfit(cols[near], rows[near], 1)  # refit on the columns near the first line
    off = np.abs(rows - np.polyval(line, cols))
    if (off < 0.03 * eye_dist).mean() < BRIM_INLIERS or off.mean() > BRIM_STRAIGHTNESS * eye_dist \
            or abs(line[0]) > 0.3:
        return None
    above = np.concatenate([texture[max(0, int(y - BRIM_BAND * eye_dist)):max(0, int(y) - 3), x] for x, y in zip(cols, rows)])
    if above.size < 20 or np.median(above) > BRIM_SMOOTHNESS * max(float(np.median(texture[face])), 1e-3):
        return None
    return np.polyval(line, np.arange(w))


def paint_eyeglasses(label_map: np.ndarray, found: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Paint eye_g (in place) on label_map [S, S] uint8 where find_eyeglasses found them (None:
    nothing): on skin, and on the nose only across its bridge; eyes, brows, hair stay on top."""
    from idface.labels import CLASS_INDEX

    if found is not None:
        glasses, bridge = found
        under = (label_map == CLASS_INDEX["skin"]) | (bridge & (label_map == CLASS_INDEX["nose"]))
        label_map[glasses & under] = CLASS_INDEX["eye_g"]
