"""Independent references for the concealment tests: dlib itself as the judge, PSNR/SSIM and
re-compression written without idface code, and the tiny plumbing checkpoint maker."""

from __future__ import annotations

import io

import numpy as np


class DlibJudge:
    """dlib's own detector, 5-point model, chip cutter and ResNet: descriptors of whole photos
    computed without any idface code."""

    def __init__(self):
        import dlib

        from idface.identity.dlib_resnet import RESNET_FILE

        from idface.weights import dlib_model_path

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        self.net = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET_FILE)))

    def descriptor(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        for upsample in (0, 1, 2):
            boxes, scores, _ = self.detector.run(rgb, upsample)
            if len(boxes):
                break
        assert len(boxes), "dlib found no face"
        shape = self.predictor(rgb, boxes[int(np.argmax(scores))])
        chip = self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.array(self.net.compute_face_descriptor(chip), dtype=np.float64)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(self.descriptor(a) - self.descriptor(b)))


def reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) on BT.601 luminance with OpenCV's 11x11 Gaussian (sigma 1.5):
    written apart from idface.metrics (scipy) on purpose."""
    import cv2

    def luma(x):
        x = x.astype(np.float64)
        return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]

    x, y = luma(a), luma(b)
    blur = lambda v: cv2.GaussianBlur(v, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sx, sy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sx + sy + c2))).mean())


def reference_recompress(rgb: np.ndarray) -> np.ndarray:
    """Half-size (2x2 box average) then JPEG 75, with Pillow only."""
    from PIL import Image

    h, w = rgb.shape[:2]
    small = Image.fromarray(rgb).resize((w // 2, h // 2), Image.BOX)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

