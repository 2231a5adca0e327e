"""Scoring whole photos the way a user would check them: detect, align, embed, compare.

`embed_photo_array` is a recognizer's photo path (the same chip its embed_photo cuts: dlib's own
get_face_chip for dlib-resnet when dlib found the face, idface.faces.align otherwise) with one
difference: the smallest accepted face can be lowered. A photo re-compressed at half size holds
faces under the app's 48-pixel minimum that recognition systems still process, so the
"after re-compression" verdicts detect down to RECOMPRESSED_MIN_FACE pixels.
"""

from __future__ import annotations

import numpy as np

from idface.faces.align import align_face
from idface.faces.detect import MIN_FACE_SIZE, Detection, detect_faces

RECOMPRESSED_MIN_FACE = 24


def chip_for(recognizer, rgb: np.ndarray, face) -> np.ndarray:
    """The aligned chip [S, S, 3] uint8 a recognizer embeds for a detected face."""
    from idface.identity.dlib_recognizer import DlibRecognizer, dlib_face_chip

    if isinstance(recognizer, DlibRecognizer) and face.dlib5 is not None:
        return dlib_face_chip(rgb, face.dlib5, face.box, recognizer.input_size)
    chip, _ = align_face(rgb, face.landmarks, recognizer.template, recognizer.input_size, dlib5=face.dlib5)
    return chip


def embed_photo_array(recognizer, rgb: np.ndarray, min_face_size: float = MIN_FACE_SIZE,
                      detection: Detection | None = None) -> tuple[np.ndarray, Detection]:
    """RGB uint8 photo -> (embedding [D], detection). Raises NoFaceError when no usable face."""
    det = detection or detect_faces(np.ascontiguousarray(rgb), "auto", min_face_size=min_face_size)
    return recognizer.embed_chip_uint8(chip_for(recognizer, rgb, det.chosen)), det
