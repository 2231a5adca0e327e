"""Face detection: every face in a photo with its score and five landmarks, and the one to use.

Detectors (a small facexlib-style registry, `init_detection_model(name)`):
- "retinaface_resnet50", "retinaface_mobile0.25": facexlib's RetinaFace, used when its weights
  file is already in a local weights folder (never downloaded here; see `idface.weights.facexlib_weight_path`).
- "dlib_hog": dlib's HOG + linear SVM frontal detector with dlib's 5-point landmark model
  (shape_predictor_5_face_landmarks.dat, CC0 / public domain, from face-recognition-models).
  Its five points are two corners per eye and the nose base; the standard five (eye centres,
  nose tip, mouth corners) are estimated from them through dlib's mean face.
- "blazeface": MediaPipe BlazeFace from the npm package (idface.faces.blazeface) for the box, dlib's
  5-point model inside it (so the dlib chip is unchanged); pose-tolerant where HOG sees only
  frontal faces.
"auto" picks the first RetinaFace whose weights are present, else dlib_hog; when dlib_hog finds no
face, BlazeFace is tried (when the npm package is present): HOG first keeps every frame HOG can
give identical to the bundled training data's, BlazeFace adds the turned and tilted faces HOG
misses. Detection.detector and DetectedFace.detector say which detector found the face.
(An earlier version of this fallback had left test processes aborting at exit; it did not recur
with the app's tests, fast and slow, see README.)

Photos are decoded by idface.images.load_image (EXIF rotation, modes, pixel budget). Large photos
are area-downscaled to at most DETECT_MAX_SIDE before detection; boxes and landmarks are mapped
back to the photo's own pixels. Faces smaller than MIN_FACE_SIZE pixels are refused with a message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from idface.errors import InputError, NoFaceError, UnavailableError
from idface.faces.align import MEAN_FACE_5, MEAN_FACE_DLIB5, apply_affine, similarity_transform
from idface.weights import dlib_model_file, facexlib_weight_path, local_weight_dirs

# Working resolution for detection: the longer side is downscaled to this (bounded memory and time).
DETECT_MAX_SIDE = 1024
# Smallest usable face: detector box side in the photo's own pixels. The generator frame puts the
# eyes 64 px apart at 256; a face under ~48 px holds too little detail for any recognizer.
MIN_FACE_SIZE = 48
# dlib HOG: try upsampling 0, then 1, then 2 (only on small working images) until a face is found.
# Upsampling only when needed also avoids false positives (the astronaut's mission patch fires at 1).
HOG_UPSAMPLE_STEPS = (0, 1, 2)
HOG_MAX_UPSAMPLED_SIDE = 2048
RETINAFACE_CONF_THRESHOLD = 0.8
MAX_UPRIGHT_ROLL = 10.0  # degrees: BlazeFace boxes of faces rolled further are turned upright for dlib's points

FACEXLIB_DETECTION_FILES = {
    "retinaface_resnet50": "detection_Resnet50_Final.pth",
    "retinaface_mobile0.25": "detection_mobilenet0.25_Final.pth",
}


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class DetectedFace:
    """One face. Coordinates are in the photo's own pixels."""

    box: np.ndarray  # [4] x0, y0, x1, y1
    score: float  # detector's confidence (dlib: SVM margin; RetinaFace: probability)
    landmarks: np.ndarray  # [5, 2] standard order (idface.faces.align)
    dlib5: np.ndarray | None = None  # [5, 2] dlib's own five points when dlib found the face
    detector: str = ""

    @property
    def size(self) -> float:
        """Side of the face box in pixels (geometric mean of width and height)."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(np.sqrt(max(w, 0) * max(h, 0)))


@dataclass
class Detection:
    """Every usable face (best first), the one chosen, and what was done to find it."""

    faces: list[DetectedFace]
    chosen: DetectedFace
    image_size: tuple[int, int]  # (height, width)
    detector: str
    detect_scale: float = 1.0  # working copy / photo
    rejected_small: int = 0  # faces found but under MIN_FACE_SIZE
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.faces)

    @property
    def message(self) -> str:
        h, w = self.image_size
        if self.count == 1:
            msg = "1 face found"
        else:
            msg = f"{self.count} faces found; used the best-scoring one ({int(round(self.chosen.size))} px wide)"
        if self.rejected_small:
            msg += f"; {self.rejected_small} more too small to use"
        if self.detect_scale < 0.5:
            msg += f"; photo downscaled from {w}x{h} for detection"
        return msg


# ----------------------------------------------------------------------------------------------
# Detectors


# dlib's HOG detector keeps scratch state: two threads running it at once (the app prepares a face
# while a concealment detects one) abort the process. Every dlib detector call holds this lock.
DLIB_LOCK = threading.Lock()


class DlibHogDetector:
    """dlib's HOG frontal face detector + its 5-point landmark model (CC0)."""

    name = "dlib_hog"

    def __init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
        self._dlib = dlib

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """rgb: working copy [H, W, 3] uint8 -> faces in its pixels (best score first)."""
        h, w = rgb.shape[:2]
        for upsample in HOG_UPSAMPLE_STEPS:
            if upsample and max(h, w) * 2 ** upsample > HOG_MAX_UPSAMPLED_SIDE:
                break
            with DLIB_LOCK:
                rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
            if len(rects):
                break
        faces = []
        for rect, score in zip(rects, scores):
            shape = self._predictor(rgb, rect)
            dlib5 = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)
            faces.append(DetectedFace(box, float(score), dlib5_to_standard(dlib5), dlib5, self.name))
        return sorted(faces, key=lambda f: -f.score)

    def refine(self, rgb: np.ndarray, face: DetectedFace) -> DetectedFace:
        """Re-place the five points on the full-resolution photo (found on a downscaled copy)."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in face.box[:2]), *(int(round(v)) - 1 for v in face.box[2:]))
        shape = self._predictor(rgb, rect)
        dlib5 = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return DetectedFace(face.box, face.score, dlib5_to_standard(dlib5), dlib5, face.detector)


def dlib5_to_standard(dlib5: np.ndarray) -> np.ndarray:
    """dlib's five points (eye corners, nose base) -> standard five: eye centres are the corner
    midpoints; nose tip and mouth corners are dlib's mean face mapped through the similarity that
    fits the five dlib points (an estimate: the 5-point model does not see the mouth)."""
    fit = similarity_transform(MEAN_FACE_DLIB5, dlib5)
    est = apply_affine(fit, MEAN_FACE_5)
    est[0] = (dlib5[2] + dlib5[3]) / 2  # image-left eye
    est[1] = (dlib5[0] + dlib5[1]) / 2  # image-right eye
    return est


class RetinaFaceDetector:
    """facexlib's RetinaFace, built on the CPU (facexlib's init defaults to CUDA) from a local file."""

    def __init__(self, name: str, weight_path: Path, device: str = "cpu") -> None:
        import torch
        from facexlib.detection.retinaface import RetinaFace

        network = "resnet50" if name.endswith("resnet50") else "mobile0.25"
        model = RetinaFace(network_name=network, half=False, device=torch.device(device))
        state = torch.load(weight_path, map_location="cpu", weights_only=True)
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
        self.model = model.eval().to(device)
        self.name = name

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        import torch

        bgr = np.ascontiguousarray(rgb[..., ::-1])
        with torch.inference_mode():
            rows = self.model.detect_faces(bgr, conf_threshold=RETINAFACE_CONF_THRESHOLD)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 15)
        faces = [DetectedFace(r[:4].copy(), float(r[4]), r[5:15].reshape(5, 2).copy(), None, self.name) for r in rows]
        return sorted(faces, key=lambda f: -f.score)


class BlazeFaceDetector:
    """MediaPipe BlazeFace (idface.faces.blazeface; npm package) finds the box, pose-tolerant and fast;
    dlib's 5-point model then places the points inside it, so alignment and the dlib chip are as
    with dlib_hog."""

    name = "blazeface"

    def __init__(self) -> None:
        from idface.faces.blazeface import BlazeFace

        self._blaze = BlazeFace()
        self._dlib = DlibHogDetector()

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        faces = []
        for found in self._blaze.detect(rgb):
            right_eye, left_eye = found.keypoints[0], found.keypoints[1]  # image left, image right
            angle = float(np.degrees(np.arctan2(*(left_eye - right_eye)[::-1])))
            faces.append(self._place_points(rgb, DetectedFace(found.box, found.score, np.zeros((5, 2)), None, self.name),
                                            angle))
        return faces

    def refine(self, rgb: np.ndarray, face: DetectedFace) -> DetectedFace:
        d = face.dlib5  # keep the roll found on the working copy (dlib order: image-right eye corners first)
        angle = 0.0 if d is None else float(np.degrees(np.arctan2(*(d[:2].mean(0) - d[2:4].mean(0))[::-1])))
        return self._place_points(rgb, face, angle)

    def _place_points(self, rgb: np.ndarray, face: DetectedFace, angle: float) -> DetectedFace:
        """dlib's five points inside the box; a rolled face (eyes' line off level by more than
        MAX_UPRIGHT_ROLL degrees) is first rotated upright about the box centre, and the points
        rotated back."""
        if abs(angle) <= MAX_UPRIGHT_ROLL:
            return self._dlib.refine(rgb, face)
        centre = (face.box[:2] + face.box[2:]) / 2
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)  # [2, 3] photo -> upright
        upright = cv2.warpAffine(rgb, rot, rgb.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        found = self._dlib.refine(upright, face)
        back = cv2.invertAffineTransform(rot)
        dlib5 = apply_affine(back, found.dlib5)
        return DetectedFace(face.box, face.score, dlib5_to_standard(dlib5), dlib5, self.name)


DETECTOR_NAMES = ("retinaface_resnet50", "retinaface_mobile0.25", "dlib_hog", "blazeface")


@lru_cache(maxsize=None)
def init_detection_model(name: str = "auto", device: str = "cpu"):
    """Detector by name (see DETECTOR_NAMES) or "auto". Raises UnavailableError with the reason."""
    if name == "auto":
        for candidate in ("retinaface_resnet50", "retinaface_mobile0.25"):
            if facexlib_weight_path(FACEXLIB_DETECTION_FILES[candidate]) is not None:
                return init_detection_model(candidate, device)
        return init_detection_model("dlib_hog", device)
    if name == "dlib_hog":
        return DlibHogDetector()
    if name == "blazeface":
        return BlazeFaceDetector()
    if name in FACEXLIB_DETECTION_FILES:
        filename = FACEXLIB_DETECTION_FILES[name]
        path = facexlib_weight_path(filename)
        if path is None:
            raise UnavailableError(
                f"{name}: weights {filename} not found in " + ", ".join(str(d) for d in local_weight_dirs())
            )
        return RetinaFaceDetector(name, path, device)
    raise InputError(f"unknown detector {name!r}; known: auto, {', '.join(DETECTOR_NAMES)}")


# ----------------------------------------------------------------------------------------------
# Entry point


def downscale_for_detection(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Area-downscale so the longer side is at most max_side -> (working copy, scale)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def _to_photo(face: DetectedFace, sx: float, sy: float) -> DetectedFace:
    # working-copy pixel centre p -> photo pixel (p + 0.5) / s - 0.5
    def back(pts):
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        return np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1)

    box = np.array([face.box[0] / sx, face.box[1] / sy, face.box[2] / sx, face.box[3] / sy])
    dlib5 = None if face.dlib5 is None else back(face.dlib5)
    return DetectedFace(box, face.score, back(face.landmarks), dlib5, face.detector)


def _blazeface_available() -> bool:
    from idface.weights.human_models import human_models_status

    return human_models_status() == "available"


def detect_faces(rgb: np.ndarray, detector: str = "auto", min_face_size: float = MIN_FACE_SIZE) -> Detection:
    """Find faces in an RGB uint8 photo [H, W, 3] -> Detection (best-scoring usable face chosen).

    Raises NoFaceError when there is no face, or when every face is smaller than min_face_size.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"detect_faces needs an RGB uint8 image [H, W, 3]; got {rgb.dtype} {tuple(rgb.shape)}")
    model = init_detection_model(detector)
    h, w = rgb.shape[:2]
    small, scale = downscale_for_detection(rgb)
    sy, sx = small.shape[0] / h, small.shape[1] / w
    found = [_to_photo(f, sx, sy) for f in model.detect(small)]
    if not found and detector == "auto" and model.name == "dlib_hog" and _blazeface_available():
        model = init_detection_model("blazeface")  # HOG sees frontal faces only; BlazeFace is pose-tolerant
        found = [_to_photo(f, sx, sy) for f in model.detect(small)]
    if scale < 1 and hasattr(model, "refine"):
        found = [model.refine(rgb, f) for f in found]
    if not found:
        raise NoFaceError(f"no face found in the {w}x{h} photo (a frontal, unobstructed face works best)")
    usable = [f for f in found if f.size >= min_face_size]
    if not usable:
        biggest = max(found, key=lambda f: f.size)
        raise NoFaceError(
            f"the face is too small to use: {int(round(biggest.size))} px wide, at least {int(min_face_size)} px "
            f"needed ({len(found)} face{'s' if len(found) > 1 else ''} found); use a closer or larger photo"
        )
    usable.sort(key=lambda f: -f.score)
    return Detection(usable, usable[0], (h, w), model.name, scale, len(found) - len(usable))
