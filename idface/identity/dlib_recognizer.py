"""dlib's face recognition ResNet as a Recognizer ("dlib-resnet").

The network is idface.identity.dlib_resnet.DlibResNet, the PyTorch port whose weights are read
from dlib_face_recognition_resnet_model_v1.dat (public domain) and which matches dlib's own
descriptors; it is differentiable. Input: dlib's 150x150 face chip (get_face_chip, padding 0.25).
Same-person rule: Euclidean distance between 128-d descriptors below 0.6 (dlib's author reports
99.38 % on LFW with it); the number is also stored in the .dat file's loss layer.

Photos: when dlib's detector found the face, the chip is cut by dlib.get_face_chip itself, so a
photo's descriptor is the one dlib's compute_face_descriptor gives; otherwise (RetinaFace
landmarks) idface.faces.align cuts it on the same template.
"""

from __future__ import annotations

import numpy as np
import torch

from idface.identity.base import Recognizer

from idface.identity import dlib_resnet as _port

NAME = "dlib-resnet"
INPUT_SIZE = _port.INPUT_SIZE  # 150
CHIP_PADDING = _port.CHIP_PADDING  # 0.25
EMBEDDING_DIM = _port.EMBEDDING_DIM  # 128
SAME_PERSON_DISTANCE = _port.SAME_PERSON_DISTANCE  # 0.6
THRESHOLD_SOURCE = (
    "dlib's rule: Euclidean distance < 0.6 on the 128-d descriptor means the same person "
    "(99.38% on LFW, Davis King, dlib.net; also stored in the model file's loss layer)"
)


class DlibRecognizer(Recognizer):
    name = NAME
    template = "dlib"
    input_size = INPUT_SIZE
    embedding_dim = EMBEDDING_DIM
    metric = "euclidean"
    threshold = SAME_PERSON_DISTANCE
    threshold_source = THRESHOLD_SOURCE
    higher_is_more_similar = False

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.backend = "torch"  # the PyTorch port; dlib itself only detects and cuts chips
        super().__init__(_port.load_dlib_resnet(device), device)

    def _forward(self, chips: torch.Tensor) -> torch.Tensor:
        # [B, 3, 150, 150] in [0, 1] -> [B, 128]
        return self.model(chips)

    def embed_photo(self, photo, detector: str = "auto"):
        from idface.faces import FaceInfo, locate_face
        from idface.faces.align import align_face

        rgb, det = locate_face(photo, detector)
        face = det.chosen
        chip, transform = align_face(rgb, face.landmarks, self.template, self.input_size, dlib5=face.dlib5)
        if face.dlib5 is not None:
            chip = dlib_face_chip(rgb, face.dlib5, face.box, self.input_size)
        return self.embed_chip_uint8(chip), FaceInfo(det.count, face, transform, det.message, det.detector)


def dlib_face_chip(rgb: np.ndarray, dlib5: np.ndarray, box: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """dlib.get_face_chip from dlib's five points: [size, size, 3] uint8, dlib's exact chip."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in dlib5])
    return np.asarray(dlib.get_face_chip(rgb, dlib.full_object_detection(rect, parts), size, CHIP_PADDING))
