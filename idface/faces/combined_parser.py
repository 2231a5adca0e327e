"""The "mesh+landmarks" parser: the mesh parser's coarse classes, the landmark parser's face features.

Measured against assets/reference (scripts/bench_parser.py), each offline parser wins different
classes: the mesh parser (idface.faces.mesh_parser) is better or level on background, hair, neck
and clothes; the landmark parser (dlib's 68 points) on ears, eyes, brows, nose, lips and inner
mouth. This parser runs both halves once:

- coarse classes (background, skin, hair, neck, clothes) from the mesh parser's marker watershed
  (mesh_parser.label_regions with features=False, ear_markers=False: FaceMesh + selfie/meet
  segmentation);
- ears from the landmark parser's rule (parse.landmark_ears: skin-coloured or shaded-skin pixels
  in a box beside dlib's jaw points, joined to the face), on the mesh parser's person pixels
  (no GrabCut), painted over background, hair or skin; measured, they beat the mesh parser's ears
  on both sides;
- brows, eyes, nose, upper/lower lip and inner mouth from the landmark parser's polygons
  (parse.paint_landmark_features) on dlib's 68 points found in the same frame, painted only on
  the pixels the mesh parser labelled skin (the face outline and forehead), so a stray landmark
  never puts a feature on hair or background;
- a hat from the mesh parser's brim test, eyeglasses from the edge test of
  idface.faces.accessories around dlib's eye contours (only where their cues are clear).

Honest caveat: the face features of the reference maps were themselves drawn from the landmark
parser's polygons (assets/reference/PROVENANCE.md), so its feature scores there favour this parser
as much as the landmark parser. Models: MediaPipe FaceMesh, selfie and meet (Apache-2.0) and dlib's
68-point model (iBUG 300-W: NON-COMMERCIAL use only). It cannot produce: ear_r, neck_l.
Side convention: CelebAMask-HQ's (l_* = subject's left = image right), as both halves.
"""

from __future__ import annotations

import numpy as np

from idface.faces.accessories import find_eyeglasses, paint_eyeglasses
from idface.faces.mesh_parser import MESH_MODELS_NOTE, MESH_PARSER_CANNOT_PRODUCE, MeshParser, label_regions
from idface.faces.parse import LANDMARK_MODEL_NOTE, LANDMARK_PARSER_CANNOT_PRODUCE, LandmarkParser, \
    landmark_ears, paint_landmark_features
from idface.labels import CLASS_INDEX

COMBINED_PARSER_CANNOT_PRODUCE = tuple(c for c in MESH_PARSER_CANNOT_PRODUCE if c in LANDMARK_PARSER_CANNOT_PRODUCE)


class CombinedParser:
    """Mesh parser's coarse classes + landmark parser's feature polygons and ears (see the module docstring)."""

    name = "mesh+landmarks"
    missing_classes = COMBINED_PARSER_CANNOT_PRODUCE

    def __init__(self) -> None:
        self.landmark_parser = LandmarkParser()  # UnavailableError without dlib's 68-point model
        self.mesh_parser = MeshParser()

    def parse_frame(self, frame: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """[S, S, 3] uint8 generator frame -> ([S, S] uint8 CelebAMask-HQ indices, notes).
        NoFaceError when FaceMesh sees no face in the frame."""
        points468 = self.mesh_parser.face_points(frame)  # [468, 2]
        points68 = self.landmark_parser.landmarks68(frame)  # [68, 2]
        lm = label_regions(frame, points468, self.mesh_parser.person(frame), valid, features=False,
                           ear_markers=False)  # [S, S] coarse classes, no ears
        free = np.isin(lm, [CLASS_INDEX[c] for c in ("background", "hair", "skin")])
        image_left, image_right = landmark_ears(frame, points68, lm != CLASS_INDEX["background"])
        lm[image_left & free] = CLASS_INDEX["r_ear"]  # the subject's right ear is on the image's left
        lm[image_right & free] = CLASS_INDEX["l_ear"]
        paint_landmark_features(lm, points68, allowed=lm == CLASS_INDEX["skin"])
        paint_eyeglasses(lm, find_eyeglasses(frame, points68[36:42], points68[42:48]))  # 36-41: eye on the image's left
        notes = [f"mesh+landmarks: coarse classes from {MESH_MODELS_NOTE}; face features and ears from "
                 f"{LANDMARK_MODEL_NOTE}",
                 "cannot produce: " + ", ".join(COMBINED_PARSER_CANNOT_PRODUCE)]
        return lm, notes
