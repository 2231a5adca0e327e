"""Face parsing: photo -> 19-class label map in CelebAMask-HQ order (idface.labels).

Parsers (facexlib-style registry, `init_parsing_model(name)`):
- "bisenet":  facexlib's BiSeNet (parsing_bisenet.pth), output remapped with
              labels.BISENET_TO_CELEBAMASK;
- "parsenet": facexlib's ParseNet (parsing_parsenet.pth), already in CelebAMask-HQ order;
  both used only when their weights file is in a local weights folder (see idface.weights.local_weight_dirs);
- "mesh+landmarks": the mesh parser's coarse classes with the landmark parser's feature polygons
  (idface.faces.combined_parser);
- "mesh": MediaPipe FaceMesh + selfie segmentation from the npm package (idface.faces.mesh_parser);
- "landmarks": the offline fallback, classical image processing around dlib's 68 landmarks.
"auto" picks the first facexlib network whose weights are present (trained on CelebAMask-HQ), else
"mesh+landmarks" when the npm package's graphs and dlib's 68-point model (non-commercial) are
both present, else "mesh" when the graphs are (Apache-2.0), else "landmarks". Measured against the
hand-corrected maps of assets/reference (scripts/bench_parser.py, README), mesh+landmarks has the
best mean IoU of the three: the mesh parser is better on background, neck and clothes and level on
hair; the landmark polygons on the features (which those maps' features were drawn from). Under
"auto", a frame where FaceMesh sees no face is parsed by "landmarks" instead (ParseResult.notes
says so). Each parser's `missing_classes` lists the classes it cannot produce.

Every parser works in the generator frame at 512x512 (CelebAMask-HQ's own framing and size), so
`parse_aligned` output lines up with `prepare_face(...).image`; `parse_photo` can also warp the
map back onto the photo.

The landmark parser ("landmarks"):
- landmarks: dlib's 68-point model (shape_predictor_68_face_landmarks.dat, trained on iBUG 300-W:
  NON-COMMERCIAL use only), found on the aligned frame;
- eyes, brows, nose, upper/lower lip and inner mouth: polygons on those landmarks;
- skin, neck, ears: a skin-colour model (Gaussian in Lab, fitted on cheek, nose-bridge and
  between-the-brows pixels) inside the face outline; the forehead goes to skin or hair by the
  nearer of the skin model and a hair model from the top of the head; neck and ears (below and
  beside the jaw) are judged by chroma, since they are usually in shadow;
- hair / clothes / background: GrabCut separates the person from the background (seeded with the
  face, a head ellipse and the body below it; padding outside the photo is background); person
  pixels that are not skin are hair or clothes by the nearer colour model (top of the head vs the
  bottom rows), each kept only where joined to its seeds.
It cannot produce: eye_g (eyeglasses), hat, ear_r (earring), neck_l (necklace) -- those pixels
come out as the class underneath (skin, hair, neck). Side convention: CelebAMask-HQ's own
(idface.labels): l_* is the subject's own left, which lies on the image's RIGHT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from idface.errors import InputError, NoFaceError, UnavailableError
from idface.faces.align import align_face, get_template
from idface.faces.detect import DLIB_LOCK, DetectedFace
from idface.weights import dlib_model_file, facexlib_weight_path, local_weight_dirs
from idface.labels import BISENET_TO_CELEBAMASK, CLASS_INDEX, validate_label_map

PARSE_SIZE = 512  # CelebAMask-HQ's resolution; every parser runs on the 512 generator frame
FACEXLIB_PARSING_FILES = {"bisenet": "parsing_bisenet.pth", "parsenet": "parsing_parsenet.pth"}
PARSER_NAMES = ("bisenet", "parsenet", "mesh+landmarks", "mesh", "landmarks")
LANDMARK_PARSER_CANNOT_PRODUCE = ("eye_g", "hat", "ear_r", "neck_l")
LANDMARK_MODEL_NOTE = "dlib 68-point landmarks (iBUG 300-W, non-commercial use only)"
LEFT_IS_IMAGE_LEFT = False  # l_* = subject's left = image right (CelebAMask-HQ, BiSeNet)

C = CLASS_INDEX  # short alias for the class indices below


@dataclass
class ParseResult:
    label_map: np.ndarray  # [S, S] uint8 class indices
    method: str  # parser name
    missing_classes: tuple[str, ...] = ()  # classes this parser cannot produce
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Network parsers (facexlib)


class NetworkParser:
    """facexlib BiSeNet / ParseNet on the CPU (facexlib's init defaults to CUDA), loaded from a local file."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        import torch

        filename = FACEXLIB_PARSING_FILES[name]
        path = facexlib_weight_path(filename)
        if path is None:
            raise UnavailableError(f"{name}: weights {filename} not found in " + ", ".join(map(str, local_weight_dirs())))
        if name == "bisenet":
            from facexlib.parsing.bisenet import BiSeNet

            model = BiSeNet(num_class=19)
        else:
            from facexlib.parsing.parsenet import ParseNet

            model = ParseNet(in_size=512, out_size=512, parsing_ch=19)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as err:
            raise UnavailableError(f"{name} weights at {path} could not be loaded: {type(err).__name__}: {err}") from None
        self.model = model.eval().to(device)
        self.name, self.device = name, device
        self.missing_classes: tuple[str, ...] = ()

    def parse_frame(self, frame: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """[512, 512, 3] uint8 generator frame -> [512, 512] CelebAMask-HQ indices."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().div(255).to(self.device)
        with torch.inference_mode():
            if self.name == "bisenet":
                mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
                std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
                logits = self.model((x - mean) / std)[0]  # [1, 19, 512, 512] BiSeNet order
                return BISENET_TO_CELEBAMASK[logits.argmax(1)[0].cpu().numpy()], []
            logits = self.model(x * 2 - 1)[0]  # [1, 19, 512, 512] CelebAMask-HQ order
            return logits.argmax(1)[0].cpu().numpy().astype(np.uint8), []


# ----------------------------------------------------------------------------------------------
# Landmark parser


def _poly(mask: np.ndarray, pts: np.ndarray, value: int = 1) -> np.ndarray:
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], value)
    return mask


def _hull(mask: np.ndarray, pts: np.ndarray, value: int = 1) -> np.ndarray:
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), value)
    return mask


def _disc(shape: tuple[int, int], centre: np.ndarray, radius: float) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, tuple(int(round(v)) for v in centre), max(1, int(round(radius))), 1, -1)
    return m.astype(bool)


def _components_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Connected components of mask that overlap seed."""
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(lab[seed & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep)


def _open_close(mask: np.ndarray, r_open: int, r_close: int) -> np.ndarray:
    m = mask.astype(np.uint8)
    if r_open:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_open + 1,) * 2))
    if r_close:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_close + 1,) * 2))
    return m.astype(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    h, w = m.shape
    flood = np.pad(m, 1).copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


class _ColourModel:
    """Gaussian in CIE Lab with a robust fit; the distance is Mahalanobis after scaling lightness by
    `lightness_weight` (shading changes lightness far more than chroma; 0 ignores lightness)."""

    def __init__(self, lab_pixels: np.ndarray, lightness_weight: float = 0.5) -> None:
        px = lab_pixels.reshape(-1, 3).astype(np.float64)
        if len(px) < 10:
            raise NoFaceError("too few face pixels to model the skin colour")
        med = np.median(px, axis=0)
        dev = np.abs(px - med)
        keep = np.all(dev <= 2.5 * np.maximum(np.median(dev, axis=0) * 1.4826, 1.0), axis=1)
        px = px[keep] if keep.sum() >= 10 else px
        self.channels = [0, 1, 2] if lightness_weight > 0 else [1, 2]
        self.scale = np.array([lightness_weight, 1.0, 1.0])[self.channels]
        px = px[:, self.channels] * self.scale
        self.mean = px.mean(0)
        cov = np.atleast_2d(np.cov(px.T)) + np.eye(len(self.channels)) * 4.0  # floor for flat regions
        self.inv = np.linalg.inv(cov)

    def distance(self, lab: np.ndarray) -> np.ndarray:
        d = lab.reshape(-1, 3)[:, self.channels].astype(np.float64) * self.scale - self.mean
        return np.sqrt(np.einsum("ni,ij,nj->n", d, self.inv, d)).reshape(lab.shape[:2])


def _lower_face(shape: tuple[int, int], p: np.ndarray) -> np.ndarray:
    """[S, S] bool: the hull of the jaw and brow points (the face below the brows)."""
    return _hull(np.zeros(shape, np.uint8), np.vstack([p[0:17], p[17:27]])).astype(bool)


def _skin_samples(shape: tuple[int, int], p: np.ndarray, eye_dist: float, up: np.ndarray) -> np.ndarray:
    """[S, S] bool: where the skin colour is sampled (cheeks, nose bridge, between the brows)."""
    r = 0.12 * eye_dist
    return (_disc(shape, (p[1] + p[31] + p[40]) / 3, r) | _disc(shape, (p[15] + p[35] + p[47]) / 3, r)
            | _disc(shape, (p[28] + p[29]) / 2, 0.6 * r)
            | _disc(shape, (p[21] + p[22]) / 2 + up * 0.25 * eye_dist, 0.6 * r))  # between the brows


def _shade_cues(lab: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skin in shadow keeps its chroma: ([S, S] chroma-only distance to the skin samples,
    [S, S] bool not too dark to be skin)."""
    chroma_d = _ColourModel(lab[samples], 0.0).distance(lab)
    shade_ok = lab[..., 0] > np.percentile(lab[..., 0][samples], 5) * 0.55
    return chroma_d, shade_ok


def _ears_beside_jaw(p: np.ndarray, eye_dist: float, person: np.ndarray, lower_face: np.ndarray,
                     ear_skin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ears as ([S, S] bool on the image's left, on its right): ear-skin person pixels in a box
    beside the jaw between brow and nose-base height, joined to the face, filled to their hull."""
    shape = person.shape
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    ears = []
    for direction, jaw_idx, outer in ((-1, slice(0, 4), p[0]), (1, slice(13, 17), p[16])):
        x_near = outer[0] - direction * 0.05 * eye_dist
        x_far = outer[0] + direction * 0.5 * eye_dist
        y_top = outer[1] - 0.35 * eye_dist
        y_bot = p[jaw_idx][:, 1].max() + 0.1 * eye_dist
        box = ((xx - x_near) * direction >= 0) & ((x_far - xx) * direction >= 0) & (yy >= y_top) & (yy <= y_bot)
        cand = _open_close(box & ear_skin & person & ~lower_face, 2, 3)
        reach = 2 * int(0.12 * eye_dist) + 1  # a thin shadow or hair strand may separate ear and cheek
        touching_face = cv2.dilate(lower_face.astype(np.uint8), np.ones((reach, reach), np.uint8)).astype(bool)
        ear = _components_touching(cand, touching_face)
        if ear.sum() < 0.02 * eye_dist ** 2:  # hidden by hair or too small to trust
            ear = np.zeros(shape, bool)
        else:  # the shaded folds inside the ear fail the colour test: take the outline's hull
            ys, xs = np.nonzero(ear)
            ear = _hull(np.zeros(shape, np.uint8), np.stack([xs, ys], 1)).astype(bool) & box & person & ~lower_face
        ears.append(ear)
    return ears[0], ears[1]


def landmark_ears(frame: np.ndarray, p: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The landmark parser's ears on a frame [S, S, 3] uint8 with dlib's 68 points p [68, 2] and a
    person mask [S, S] bool from elsewhere -> ([S, S] bool ear on the image's left, on its right)."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
    eye_dist, up = landmark_axes(p)
    samples = _skin_samples(person.shape, p, eye_dist, up)
    chroma_d, shade_ok = _shade_cues(lab, samples)
    ear_skin = (_ColourModel(lab[samples]).distance(lab) < 4.5) | ((chroma_d < 4.5) & shade_ok)
    return _ears_beside_jaw(p, eye_dist, person, _lower_face(person.shape, p), ear_skin)


class LandmarkParser:
    """Classical parser around dlib's 68 landmarks (see module doc for what it can and cannot do)."""

    name = "landmarks"
    missing_classes = LANDMARK_PARSER_CANNOT_PRODUCE

    def __init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
        self._dlib = dlib

    def landmarks68(self, frame: np.ndarray) -> np.ndarray:
        """68 points on a generator frame: the face is found again in the frame (it is large and
        centred there); if the detector misses it, the box expected from the template is used."""
        with DLIB_LOCK:
            rects, scores, _ = self._detector.run(frame, 0, 0.0)
        size = frame.shape[0]
        if len(rects):
            centre = np.array([size / 2, size / 2])
            rect = min(rects, key=lambda r: np.hypot((r.left() + r.right()) / 2 - centre[0], (r.top() + r.bottom()) / 2 - centre[1]))
        else:
            tpl = get_template("generator", size).points
            eye_dist = tpl[1, 0] - tpl[0, 0]
            cx, cy = (tpl[0, 0] + tpl[1, 0]) / 2, tpl[0, 1]
            rect = self._dlib.rectangle(int(cx - 1.1 * eye_dist), int(cy - 0.75 * eye_dist),
                                        int(cx + 1.1 * eye_dist), int(cy + 1.45 * eye_dist))
        shape = self._predictor(frame, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def parse_frame(self, frame: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """[S, S, 3] uint8 generator frame -> ([S, S] uint8 label map, notes). valid [S, S] bool:
        pixels that come from the photo (the rest is padding and is labelled background)."""
        p = self.landmarks68(frame)
        return self.parse_with_landmarks(frame, p, valid)

    def parse_with_landmarks(self, frame: np.ndarray, p: np.ndarray, valid: np.ndarray | None = None
                             ) -> tuple[np.ndarray, list[str]]:
        h, w = frame.shape[:2]
        notes = [f"landmarks: {LANDMARK_MODEL_NOTE}",
                 "cannot produce: " + ", ".join(LANDMARK_PARSER_CANNOT_PRODUCE)]
        lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
        eye_dist, up = landmark_axes(p)
        shape = (h, w)
        yy, xx = np.mgrid[0:h, 0:w]

        # --- face outline: jaw + forehead (brows raised by ~0.8 eye distance, arched) -------------
        brow_pts = p[17:27]
        forehead = brow_pts + up * 0.5 * eye_dist
        forehead[[0, -1]] = brow_pts[[0, -1]] + up * 0.25 * eye_dist
        top_mid = (brow_pts[4] + brow_pts[5]) / 2 + up * 0.72 * eye_dist
        outline = np.vstack([p[0:17], forehead[::-1][:5], top_mid, forehead[::-1][5:]])
        face_area = _hull(np.zeros(shape, np.uint8), outline).astype(bool)
        lower_face = _lower_face(shape, p)

        # --- skin colour model from cheeks and nose bridge --------------------------------------
        samples = _skin_samples(shape, p, eye_dist, up)
        skin_model = _ColourModel(lab[samples])
        skin_d = skin_model.distance(lab)
        skin_loose = skin_d < 4.5
        skin_strict = _ColourModel(lab[samples], 1.0).distance(lab) < 3.0  # lightness counts: hair is darker

        # --- person vs background: GrabCut at half resolution -----------------------------------
        chin = p[8]
        face_w = float(np.linalg.norm(p[16] - p[0]))
        valid = np.ones(shape, bool) if valid is None else valid.astype(bool)
        person = self._grabcut(frame, p, face_area, eye_dist, face_w, up, valid)
        person = (person & valid) | face_area

        # --- skin: lower face always; forehead where skin-coloured and connected -----------------
        # the forehead may rise above the outline (receding hair): a half ellipse above the brows,
        # as wide as the jaw and 1.3 eye distances high, where skin may continue
        brow_top = float(p[17:27, 1].min())
        fx, fy = (p[0, 0] + p[16, 0]) / 2, brow_top
        half_w = 0.47 * (p[16, 0] - p[0, 0])
        forehead_zone = (yy < brow_top) & (((xx - fx) / half_w) ** 2 + ((yy - fy) / (1.3 * eye_dist)) ** 2 <= 1)
        # forehead: skin or hair, decided by which colour model is nearer; the hair model comes
        # from the top of the head (minus anything skin-coloured, for bald heads)
        hair_top = person & (yy < brow_top - 1.0 * eye_dist) & ~skin_strict & ~forehead_zone
        if hair_top.sum() > 100:
            d_skin = skin_model.distance(lab)
            d_hair = _ColourModel(lab[hair_top], 0.5).distance(lab)
            forehead_skin = (d_skin < d_hair) & (d_skin < 6.0)
        else:
            forehead_skin = skin_strict
        skin = lower_face | ((face_area | forehead_zone) & forehead_skin) | (face_area & skin_strict)
        skin = _components_touching(_open_close(skin, 2, 6), lower_face)
        skin = _fill_holes(skin) & (face_area | lower_face | forehead_zone)

        # --- neck: skin-coloured person pixels below the jaw, joined to it ----------------------
        jaw_line_y = np.interp(xx, p[2:15, 0], p[2:15, 1], left=np.inf, right=np.inf)
        below_jaw = (yy > jaw_line_y - 2) & person
        neck_band = np.abs(xx - chin[0]) < 0.5 * face_w + 0.25 * np.maximum(yy - chin[1], 0)
        # the neck is usually in the chin's shadow: judge it by chroma, allowing darker skin
        chroma_d, shade_ok = _shade_cues(lab, samples)
        skin_chroma = chroma_d < 3.0
        neck = below_jaw & (skin_loose | (skin_chroma & shade_ok)) & neck_band & ~lower_face
        neck = _open_close(neck, 3, 5)
        jaw_seed = _hull(np.zeros(shape, np.uint8), np.vstack([p[3:14], p[3:14] + [0, 0.25 * eye_dist]])).astype(bool)
        neck = _components_touching(neck, jaw_seed & ~lower_face)

        # --- ears: skin beside the jaw between brow and nose-base height, joined to the face -----
        ear_skin = skin_loose | ((chroma_d < 4.5) & shade_ok)  # ears are often redder and shaded
        ears = dict(zip(("left", "right"), _ears_beside_jaw(p, eye_dist, person, lower_face, ear_skin)))

        # --- hair vs clothes among the remaining person pixels ----------------------------------
        # Seeds: above the jaw's widest point it is hair; in the bottom rows, away from the neck
        # and below the jaw line, clothes. Every other pixel goes to the nearer colour model, and
        # each class keeps only the parts joined to its seeds (hair hangs from the head, clothes
        # rise from the bottom edge).
        rest = person & ~skin & ~neck & ~ears["left"] & ~ears["right"]
        hair_seed = rest & (yy < p[2:15, 1].min())
        bottom_rows = yy >= h - max(4, int(0.04 * h))
        cloth_seed = rest & bottom_rows & (np.abs(xx - chin[0]) > 0.3 * face_w) & (yy > jaw_line_y)
        cloth_seed |= rest & bottom_rows & (yy > chin[1] + 0.2 * eye_dist)
        if hair_seed.sum() > 50 and cloth_seed.sum() > 50:
            hair_d = _ColourModel(lab[hair_seed], 0.8).distance(lab)
            cloth_d = _ColourModel(lab[cloth_seed], 0.8).distance(lab)
            prefers_hair = hair_d < cloth_d
        else:
            prefers_hair = yy < chin[1] + 0.2 * eye_dist
        hair = _components_touching(_open_close(rest & (prefers_hair | hair_seed) & ~cloth_seed, 1, 2), hair_seed)
        cloth = _components_touching(_open_close(rest & ~hair, 2, 0), cloth_seed | (bottom_rows & rest))
        leftover = rest & ~hair & ~cloth
        hair |= leftover & (yy < chin[1])
        cloth |= leftover & (yy >= chin[1])

        # --- paint, coarse to fine ----------------------------------------------------------------
        lm = np.zeros(shape, np.uint8)
        lm[cloth] = C["cloth"]
        lm[hair] = C["hair"]
        lm[neck] = C["neck"]
        left_ear, right_ear = ("l_ear", "r_ear") if LEFT_IS_IMAGE_LEFT else ("r_ear", "l_ear")
        lm[ears["left"]] = C[left_ear]
        lm[ears["right"]] = C[right_ear]
        lm[skin] = C["skin"]
        paint_landmark_features(lm, p)
        return lm, notes

    @staticmethod
    def _grabcut(frame, p, face_area, eye_dist, face_w, up, valid) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = 0.375  # GrabCut at 192x192 on the 512 frame: its cost dominates parsing
        small = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        q = p * scale
        ed, fw = eye_dist * scale, face_w * scale
        mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        chin = q[8]
        face_h = float(np.linalg.norm(q[8] - q[27]))  # nose bridge to chin
        centre = q[27] + up * 0.1 * ed
        angle = float(np.degrees(np.arctan2(up[0], -up[1])))  # tilt of the head
        yy, xx = np.mgrid[0:sh, 0:sw]

        def ellipse(ax, ay):
            c, s_ = np.cos(np.radians(angle)), np.sin(np.radians(angle))
            dx, dy = xx - centre[0], yy - centre[1]
            u, v = c * dx + s_ * dy, -s_ * dx + c * dy
            return (u / ax) ** 2 + (v / ay) ** 2 <= 1

        shoulders = yy >= chin[1] + 0.3 * ed
        # sure background: well outside the head, above the shoulders
        mask[~ellipse(0.85 * fw, 1.55 * face_h) & ~shoulders] = cv2.GC_BGD
        mask[ellipse(0.62 * fw, 1.3 * face_h)] = cv2.GC_PR_FGD
        body = np.array([[chin[0] - 0.45 * fw, chin[1] - 0.2 * ed], [chin[0] + 0.45 * fw, chin[1] - 0.2 * ed],
                         [chin[0] + 1.3 * fw, chin[1] + 0.6 * ed], [chin[0] + 1.3 * fw, sh],
                         [chin[0] - 1.3 * fw, sh], [chin[0] - 1.3 * fw, chin[1] + 0.6 * ed]])
        cv2.fillConvexPoly(mask, np.round(body).astype(np.int32), cv2.GC_PR_FGD)
        face_small = cv2.resize(face_area.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
        inner = cv2.erode(face_small.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        mask[inner] = cv2.GC_FGD
        neck_core = np.array([[chin[0] - 0.2 * fw, chin[1] + 0.1 * ed], [chin[0] + 0.2 * fw, chin[1] + 0.1 * ed],
                              [chin[0] + 0.25 * fw, chin[1] + 0.6 * ed], [chin[0] - 0.25 * fw, chin[1] + 0.6 * ed]])
        cv2.fillConvexPoly(mask, np.round(neck_core).astype(np.int32), cv2.GC_FGD)
        valid_small = cv2.resize(valid.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
        mask[~valid_small & (mask != cv2.GC_FGD)] = cv2.GC_BGD  # padding outside the photo
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(small, mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            pass  # degenerate (e.g. a flat image): keep the seeds
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8) * 255
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR) > 127
        fg = _open_close(fg, 3, 3)
        seed = cv2.resize(inner.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return _fill_holes(_components_touching(fg, seed))


def landmark_axes(p: np.ndarray) -> tuple[float, np.ndarray]:
    """dlib's 68 points [68, 2] -> (distance between the eye centres in pixels, unit vector [2]
    perpendicular to the eye line, pointing towards the top of the head)."""
    eye_l, eye_r = p[36:42].mean(0), p[42:48].mean(0)
    eye_dist = float(np.linalg.norm(eye_r - eye_l))
    up = np.array([eye_l[1] - eye_r[1], eye_r[0] - eye_l[0]]) / max(eye_dist, 1e-6)  # perpendicular
    if up[1] > 0:
        up = -up
    return eye_dist, up


def paint_landmark_features(lm: np.ndarray, p: np.ndarray, allowed: np.ndarray | None = None) -> None:
    """Paint brows, nose, eyes, lips and inner mouth onto label map lm [S, S] uint8 (in place) as
    polygons on dlib's 68 points p [68, 2]; with `allowed` [S, S] bool, only on those pixels."""
    eye_dist, up = landmark_axes(p)
    shape = lm.shape
    if allowed is not None:
        target, lm = lm, np.full(shape, 255, np.uint8)  # paint on a blank layer, then copy where allowed
    left_first = LEFT_IS_IMAGE_LEFT
    names = (("l_brow", "r_brow"), ("l_eye", "r_eye")) if left_first else (("r_brow", "l_brow"), ("r_eye", "l_eye"))
    # brows: a band on the brow landmarks (they follow the brow's middle-upper edge)
    thick = 0.11 * eye_dist
    for pts, name in ((p[17:22], names[0][0]), (p[22:27], names[0][1])):
        top = pts + up * 0.35 * thick
        bottom = pts - up * 0.75 * thick
        bottom[[0, -1]] = pts[[0, -1]] - up * 0.35 * thick
        m = _poly(np.zeros(shape, np.uint8), np.vstack([top, bottom[::-1]])).astype(bool)
        lm[m] = C[name]
    # nose: bridge from between the eyes to the nostrils, alae a little wider than 31..35
    base_w = float(np.linalg.norm(p[35] - p[31]))
    side = (p[35] - p[31]) / max(base_w, 1e-6)
    nose = np.vstack([
        p[27] - side * 0.07 * eye_dist, p[27] + side * 0.07 * eye_dist,
        p[35] + side * 0.12 * base_w + up * 0.3 * base_w, p[35] + side * 0.06 * base_w,
        p[34], p[33] - up * 0.04 * base_w, p[32],
        p[31] - side * 0.06 * base_w, p[31] - side * 0.12 * base_w + up * 0.3 * base_w,
    ])
    lm[_hull(np.zeros(shape, np.uint8), nose).astype(bool)] = C["nose"]
    # eyes: the eyelid contour, grown by a pixel or two
    grow = np.ones((3, 3), np.uint8)
    for pts, name in ((p[36:42], names[1][0]), (p[42:48], names[1][1])):
        m = cv2.dilate(_poly(np.zeros(shape, np.uint8), pts), grow).astype(bool)
        lm[m] = C[name]
    # lips and inner mouth
    upper = np.vstack([p[48:55], p[64:59:-1]])
    lower = np.vstack([p[54:60], p[48:49], p[60:61], p[67:63:-1]])
    lm[_poly(np.zeros(shape, np.uint8), upper).astype(bool)] = C["u_lip"]
    lm[_poly(np.zeros(shape, np.uint8), lower).astype(bool)] = C["l_lip"]
    inner = p[60:68]
    area = cv2.contourArea(np.round(inner).astype(np.float32))
    if area > 0.005 * eye_dist ** 2:
        lm[_poly(np.zeros(shape, np.uint8), inner).astype(bool)] = C["mouth"]
    if allowed is not None:
        painted = (lm != 255) & allowed
        target[painted] = lm[painted]


# ----------------------------------------------------------------------------------------------
# Registry and entry points


@lru_cache(maxsize=None)
def init_parsing_model(name: str = "auto", device: str = "cpu"):
    """Parser by name (PARSER_NAMES) or "auto" (a facexlib network with local weights, else
    mesh+landmarks when the npm graphs and dlib's 68-point model are present, else mesh when the
    npm graphs are, else landmarks)."""
    if name == "auto":
        for candidate in ("bisenet", "parsenet"):
            if facexlib_weight_path(FACEXLIB_PARSING_FILES[candidate]) is not None:
                return init_parsing_model(candidate, device)
        from idface.weights.human_models import human_models_status

        if human_models_status() == "available":
            for candidate in ("mesh+landmarks", "mesh"):  # mesh+landmarks needs dlib's 68-point model too
                try:
                    return init_parsing_model(candidate, device)
                except UnavailableError:
                    pass
        return init_parsing_model("landmarks", device)
    if name in FACEXLIB_PARSING_FILES:
        return NetworkParser(name, device)
    if name == "landmarks":
        return LandmarkParser()
    if name == "mesh":
        from idface.faces.mesh_parser import MeshParser

        return MeshParser()
    if name == "mesh+landmarks":
        from idface.faces.combined_parser import CombinedParser

        return CombinedParser()
    raise InputError(f"unknown parser {name!r}; known: auto, {', '.join(PARSER_NAMES)}")


def _resize_labels(lm: np.ndarray, size: int) -> np.ndarray:
    if lm.shape == (size, size):
        return lm
    return cv2.resize(lm, (size, size), interpolation=cv2.INTER_NEAREST)


def parse_frame(frame: np.ndarray, size: int | None = None, parser: str = "auto",
                valid: np.ndarray | None = None) -> ParseResult:
    """Parse an image that is already in the generator frame (e.g. a CelebA-HQ image or a
    generated face) [S, S, 3] uint8 -> ParseResult at `size` (default: the input size)."""
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != arr.shape[1] or arr.dtype != np.uint8:
        raise InputError(f"parse_frame needs a square RGB uint8 frame [S, S, 3]; got {arr.dtype} {tuple(arr.shape)}")
    model = init_parsing_model(parser)
    work = arr if arr.shape[0] == PARSE_SIZE else cv2.resize(
        arr, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_AREA if arr.shape[0] > PARSE_SIZE else cv2.INTER_CUBIC)
    if valid is not None and valid.shape != work.shape[:2]:
        valid = cv2.resize(valid.astype(np.uint8), work.shape[:2][::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    if not isinstance(model, NetworkParser):  # landmarks, mesh: they use the padding mask themselves
        try:
            lm, notes = model.parse_frame(work, valid)
        except NoFaceError as err:
            if parser != "auto" or model.name not in ("mesh", "mesh+landmarks"):
                raise
            model_name, model = model.name, init_parsing_model("landmarks")  # FaceMesh saw no face in the frame: dlib's 68 points may
            lm, notes = model.parse_frame(work, valid)
            notes = [f"{model_name} parser refused ({err}); used the landmark parser"] + notes
    else:
        lm, notes = model.parse_frame(work)
        if valid is not None:
            lm = np.where(valid, lm, C["background"]).astype(np.uint8)
    out = _resize_labels(validate_label_map(lm), size or arr.shape[0])
    return ParseResult(out, model.name, tuple(model.missing_classes), notes)


def parse_aligned(rgb: np.ndarray, face: DetectedFace, size: int = 256, parser: str = "auto") -> ParseResult:
    """Parse a detected face of a photo in the generator frame of side `size` (aligned with
    align_face(rgb, face.landmarks, "generator", size, dlib5=face.dlib5))."""
    frame, transform = align_face(rgb, face.landmarks, "generator", PARSE_SIZE, dlib5=face.dlib5)
    valid = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), transform.matrix, (PARSE_SIZE, PARSE_SIZE),
                           flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return parse_frame(frame, size, parser, valid=valid)


def parse_photo(source, parser: str = "auto", size: int = 256, photo_frame: bool = False, detector: str = "auto",
                what: str = "photo"):
    """Photo (path, bytes, PIL, array) -> (ParseResult, AlignedFace). The label map is in the
    generator frame of side `size`, or, with photo_frame=True, warped back onto the photo's own
    pixels (nearest; outside the frame: background)."""
    from idface.faces import AlignedFace, locate_face

    rgb, det = locate_face(source, detector, what)
    face = det.chosen
    image, transform = align_face(rgb, face.landmarks, "generator", size, dlib5=face.dlib5)
    result = parse_aligned(rgb, face, size, parser)
    aligned = AlignedFace(image, result.label_map, transform, det.count, det.message, face, result.method,
                          result.missing_classes)
    if photo_frame:
        h, w = rgb.shape[:2]
        back = cv2.warpAffine(result.label_map, transform.inverse, (w, h), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=C["background"])
        result = ParseResult(back, result.method, result.missing_classes, result.notes)
    return result, aligned


__all__ = ["ParseResult", "init_parsing_model", "parse_frame", "parse_aligned", "parse_photo", "PARSER_NAMES",
           "LANDMARK_PARSER_CANNOT_PRODUCE"]
