"""Faces: detection, alignment to each consumer's template, parsing into the 19 CelebAMask-HQ classes.

    from idface.faces import prepare_face
    face = prepare_face("photo.jpg")          # path, bytes, PIL image or RGB array
    face.image       # [256, 256, 3] uint8, the generator's aligned frame
    face.label_map   # [256, 256] uint8 class indices (idface.labels order)
    face.transform   # FaceTransform photo -> frame (paste results back with align.paste_back)
    face.message     # e.g. "3 faces found; used the best-scoring one (212 px wide)"

Bad input raises idface.errors.InputError / NoFaceError with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from idface.faces.align import FaceTransform, align_face, get_template  # noqa: F401
from idface.faces.detect import Detection, DetectedFace, detect_faces  # noqa: F401
from idface.images import ImageSource, load_image


@dataclass
class FaceInfo:
    """What a photo-level call found and did: shown to users next to scores."""

    faces_found: int
    face: DetectedFace  # the face used, in the photo's pixels
    transform: FaceTransform  # photo -> the consumer's crop
    message: str
    detector: str


@dataclass
class AlignedFace:
    """A photo's chosen face in the generator frame, parsed."""

    image: np.ndarray  # [S, S, 3] uint8 generator frame
    label_map: np.ndarray | None  # [S, S] uint8 class indices, None when parse=False
    transform: FaceTransform  # photo -> frame
    faces_found: int
    message: str
    face: DetectedFace
    parse_method: str = ""
    missing_classes: tuple[str, ...] = ()


def locate_face(source: ImageSource, detector: str = "auto", what: str = "photo") -> tuple[np.ndarray, Detection]:
    """Decode a photo (EXIF rotation, modes, pixel budget) and find its faces -> (rgb, detection)."""
    rgb = load_image(source, what)
    return rgb, detect_faces(rgb, detector)


def crop_face(source: ImageSource, template: str, size: int | None = None, detector: str = "auto",
              what: str = "photo") -> tuple[np.ndarray, FaceInfo]:
    """Photo -> (aligned crop [S, S, 3] uint8 for `template`, FaceInfo)."""
    rgb, det = locate_face(source, detector, what)
    crop, transform = align_face(rgb, det.chosen.landmarks, template, size, dlib5=det.chosen.dlib5)
    return crop, FaceInfo(det.count, det.chosen, transform, det.message, det.detector)


def prepare_face(source: ImageSource, size: int = 256, parse: bool = True, detector: str = "auto",
                 parser: str = "auto") -> AlignedFace:
    """Photo -> AlignedFace: the best face aligned to the generator frame (size 256 or 512) and its
    19-class label map. Parsing runs at 512 in the frame and is resized (nearest) to `size`."""
    if size not in (256, 512):
        from idface.errors import InputError

        raise InputError(f"the generator frame is 256 or 512 pixels; got {size}")
    rgb, det = locate_face(source, detector)
    face = det.chosen
    image, transform = align_face(rgb, face.landmarks, "generator", size, dlib5=face.dlib5)
    if not parse:
        return AlignedFace(image, None, transform, det.count, det.message, face)
    from idface.faces.parse import parse_aligned

    result = parse_aligned(rgb, face, size=size, parser=parser)
    return AlignedFace(image, result.label_map, transform, det.count, det.message, face, result.method,
                       result.missing_classes)
