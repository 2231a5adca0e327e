"""dlib itself as the judge of identity: its HOG face detector, 5-point shape predictor,
`get_face_chip` and face-recognition ResNet, run on an image as written (uint8), exactly as a
third party with dlib would run them. Training and attacks use idface's PyTorch port of the
ResNet; verdicts in reports come from this.

    judge = DlibJudge()
    d = judge.descriptor(rgb)          # [128] float64, or None when dlib finds no face
    judge.distance(rgb, other_desc)    # Euclidean distance (same person below 0.6), or None
"""

from __future__ import annotations

import numpy as np

from idface.errors import UnavailableError

SAME_PERSON_DISTANCE = 0.6   # dlib's rule (dlib.net: 99.38 % on LFW)


class DlibJudge:
    def __init__(self):
        try:
            import dlib
        except ImportError as err:
            raise UnavailableError(f"the dlib package is not installed ({err})") from None
        from idface.identity.dlib_resnet import RESNET_FILE
        from idface.weights import dlib_model_path

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        self.net = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET_FILE)))

    def descriptor(self, rgb: np.ndarray) -> np.ndarray | None:
        """uint8 RGB [H, W, 3] -> dlib's 128-d descriptor of the best-scoring face (the detector
        upsamples the image 0, 1, then 2 times until it finds one), or None."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        for upsample in (0, 1, 2):
            boxes, scores, _ = self.detector.run(rgb, upsample)
            if len(boxes):
                break
        if not len(boxes):
            return None
        shape = self.predictor(rgb, boxes[int(np.argmax(scores))])
        chip = self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.array(self.net.compute_face_descriptor(chip), dtype=np.float64)

    def distance(self, rgb: np.ndarray, reference: np.ndarray | None) -> float | None:
        d = self.descriptor(rgb)
        return None if d is None or reference is None else float(np.linalg.norm(d - reference))
