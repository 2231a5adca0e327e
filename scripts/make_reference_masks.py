"""Reference label maps of the bundled photos for measuring parsers (assets/reference/).

    .venv/bin/python scripts/make_reference_masks.py [--sheets DIR]

For each photo of assets/faces/ it writes, in the 512 generator frame (dlib HOG detection and
5-point alignment, as `prepare_face(photo, 512)`):
  <name>_mask.png        uint8 class indices (mode P, official palette), CelebAMask-HQ convention
  frames.json            the photo -> frame affine matrix of each photo, so a benchmark parses
                         exactly this frame whatever detector it uses
and, with --sheets, photo-with-boundaries | colour overlay PNGs to look at.

How a map is made (see assets/reference/PROVENANCE.md for what was checked):
1. start: assets/train/<name>_mask.png (256, landmark parser + hand corrections), upsampled;
2. coarse classes (background, skin, hair, hat, ears, neck, cloth): each region is eroded to a
   core, then hand-placed strokes and polygons (EDITS below, traced on the 512 frame with a
   coordinate grid) are painted over the cores as sure markers, and a marker-based watershed on
   the photo places every boundary on the image's own edges;
3. face features (brows, eyes, nose, lips, mouth, eyeglasses): the starting map's regions,
   smoothed (no staircase from the upsampling), except where EDITS paint them;
4. final paint: EDITS entries marked "final" are painted after the watershed, as traced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "assets" / "faces"
TRAIN = ROOT / "assets" / "train"
OUT = ROOT / "assets" / "reference"
PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
SIZE = 512
COARSE = ("background", "skin", "hair", "hat", "l_ear", "r_ear", "neck", "cloth")
FEATURES = ("eye_g", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip", "mouth")
CORE_ERODE = 14  # pixels: how far a starting region's edge is distrusted

# Hand edits per photo, in 512 frame pixels (x, y), image-left/right as seen on screen.
# (kind, class, points[, width]): "marker" polygon -> sure marker before the watershed;
# "stroke" polyline of the given width -> sure marker; "unsure" polygon -> that class's starting
# markers erased there (the class may be "a+b"; the watershed decides); "final" polygon -> painted
# after the watershed. Each photo's entries say what was wrong in the starting map.
EDITS: dict[str, list[tuple]] = {
    # grey hair beside and below both ears was skin; the ears were too large; right bottom was clothes
    "grace_hopper": [
        ("unsure", "skin+hair+r_ear", [(60, 160), (142, 160), (142, 425), (60, 425)]),
        ("unsure", "skin+hair+l_ear", [(378, 180), (432, 180), (432, 445), (378, 445)]),
        ("unsure", "cloth+skin+neck", [(400, 380), (512, 380), (512, 512), (420, 512)]),
        ("stroke", "hair", [(100, 175), (124, 205)], 8),
        ("marker", "r_ear", [(92, 240), (115, 240), (118, 300), (100, 315), (90, 290)]),
        ("stroke", "hair", [(85, 322), (100, 360), (110, 395)], 8),
        ("stroke", "skin", [(142, 250), (150, 380)], 8),
        ("stroke", "hair", [(401, 186), (410, 225)], 6),
        ("marker", "l_ear", [(398, 255), (412, 255), (412, 340), (398, 350)]),
        ("stroke", "hair", [(378, 385), (390, 420)], 6),
        ("stroke", "skin", [(372, 250), (372, 360)], 8),
        ("marker", "background", [(440, 240), (512, 240), (512, 512), (455, 512), (432, 470)]),
        ("stroke", "cloth", [(350, 472), (405, 507)], 10),
    ],
    # the hair over the temples and the right of the crown was skin
    "obama": [
        ("unsure", "skin", [(80, 0), (430, 0), (430, 250), (372, 250), (372, 112), (135, 112), (130, 250),
                            (80, 250)]),
        ("marker", "skin", [(165, 105), (335, 105), (345, 190), (155, 190)]),
        ("stroke", "hair", [(112, 200), (112, 150), (135, 90), (170, 55), (250, 42), (320, 50), (365, 80),
                            (390, 130), (398, 200)], 10),
    ],
    # the neck right of the chin (below the jaw's shading edge) was skin
    "obama2": [
        ("unsure", "skin", [(300, 480), (440, 345), (470, 345), (470, 512), (300, 512)]),
        ("stroke", "skin", [(280, 440), (330, 410), (380, 375), (415, 345)], 5),
        ("marker", "neck", [(330, 475), (380, 440), (420, 400), (438, 385), (432, 425), (400, 460), (360, 495)]),
    ],
    # the hair is a thin band; the starting map had hair over the forehead's sides; the ear on the
    # image's right (lit edge, x 368-397) was missing
    "obama3": [
        ("marker", "l_ear", [(374, 310), (393, 308), (393, 332), (386, 378), (377, 400), (371, 396), (372, 350)]),
        ("unsure", "skin+hair", [(60, 40), (400, 40), (400, 300), (60, 300)]),
        ("marker", "skin", [(110, 210), (150, 130), (200, 108), (260, 104), (320, 120), (345, 160), (350, 210)]),
        ("stroke", "hair", [(80, 210), (95, 150), (140, 95), (200, 72), (260, 66), (320, 85), (355, 120),
                            (372, 170), (378, 230)], 8),
        ("marker", "neck", [(170, 492), (330, 492), (330, 512), (170, 512)]),
    ],
    # forehead/hair border was ragged; the ear on the image's right was missing; necks beside the jaw
    "biden": [
        ("unsure", "skin+hair", [(0, 0), (440, 0), (440, 300), (0, 300)]),
        ("stroke", "hair", [(60, 250), (60, 150), (85, 80), (130, 40), (250, 30), (350, 45), (390, 90),
                            (400, 160), (405, 240)], 10),
        ("marker", "skin", [(115, 230), (115, 130), (140, 85), (250, 75), (330, 85), (360, 130), (370, 230)]),
        ("marker", "l_ear", [(372, 290), (390, 290), (390, 360), (376, 368)]),
        ("marker", "neck", [(70, 400), (110, 400), (150, 455), (110, 470), (70, 450)]),
        ("marker", "neck", [(350, 430), (375, 420), (385, 470), (355, 480)]),
    ],
}


def _poly_mask(shape, pts) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(pts)).astype(np.int32)], 1)
    return m.astype(bool)


def _stroke_mask(shape, pts, width) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.polylines(m, [np.round(np.asarray(pts)).astype(np.int32)], False, 1, int(width))
    return m.astype(bool)


def _smooth_regions(lm: np.ndarray, classes, r: int = 2) -> np.ndarray:
    """Majority-smooth the given classes' regions (removes the 2x nearest-neighbour staircase)."""
    from idface.labels import CLASS_INDEX

    out = lm.copy()
    k = (2 * r + 1,) * 2
    best = np.full(lm.shape, -1.0)
    for name in classes:
        c = CLASS_INDEX[name]
        score = cv2.blur((lm == c).astype(np.float32), k)
        take = (score > 0.5) & (score > best)
        out[take] = c
        best[take] = score[take]
    return out


def make_reference(name: str, frame: np.ndarray, start: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from idface.labels import CLASS_INDEX as C

    shape = frame.shape[:2]
    markers = np.zeros(shape, np.int32)  # 0 = unknown, class index + 1 = sure
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * CORE_ERODE + 1,) * 2)
    feature_ids = [C[f] for f in FEATURES]
    coarse_start = start.copy()
    coarse_start[np.isin(start, feature_ids)] = C["skin"]  # features sit on skin
    for cls in COARSE:
        core = cv2.erode((coarse_start == C[cls]).astype(np.uint8), kernel).astype(bool)
        markers[core] = C[cls] + 1
    finals = []
    for edit in EDITS.get(name, []):
        kind, cls, pts = edit[:3]
        if kind == "marker":
            markers[_poly_mask(shape, pts)] = C[cls] + 1
        elif kind == "stroke":
            markers[_stroke_mask(shape, pts, edit[3])] = C[cls] + 1
        elif kind == "unsure":
            ids = [C[c] + 1 for c in cls.split("+")]
            markers[_poly_mask(shape, pts) & np.isin(markers, ids)] = 0
        elif kind == "final":
            finals.append((cls, pts))
        else:
            raise ValueError(kind)
    markers[~valid] = C["background"] + 1
    ws = markers.copy()
    cv2.watershed(np.ascontiguousarray(frame[..., ::-1]), ws)  # BGR
    # watershed lines (-1): the neighbour's label
    lines = ws == -1
    if lines.any():
        filled = cv2.dilate(np.where(lines, 0, ws).astype(np.uint8), np.ones((3, 3), np.uint8))
        ws[lines] = filled[lines]
    lm = (ws - 1).astype(np.uint8)
    features = _smooth_regions(np.where(np.isin(start, feature_ids), start, 255).astype(np.uint8), FEATURES)
    keep = np.isin(features, feature_ids)
    lm[keep] = features[keep]
    for cls, pts in finals:
        lm[_poly_mask(shape, pts)] = C[cls]
    lm[~valid] = C["background"]
    return lm


def main() -> None:
    from idface.faces import prepare_face
    from idface.images import save_label_map
    from idface.labels import PALETTE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", help="write photo-with-boundaries | overlay PNGs here")
    ap.add_argument("--only", nargs="*", help="photo stems to redo")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    frames_file = OUT / "frames.json"
    frames = json.loads(frames_file.read_text()) if frames_file.exists() else {}
    for photo in PHOTOS:
        stem = Path(photo).stem
        if args.only and stem not in args.only:
            continue
        face = prepare_face(FACES / photo, SIZE, parse=False, detector="dlib_hog")
        frame = face.image
        from idface.images import load_image

        rgb = load_image(FACES / photo)
        valid = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), face.transform.matrix, (SIZE, SIZE),
                               flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)
        start = np.asarray(Image.open(TRAIN / f"{stem}_mask.png"))
        start = cv2.resize(start, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
        lm = make_reference(stem, frame, start, valid)
        save_label_map(lm, OUT / f"{stem}_mask.png", preview=False)
        frames[stem] = {"photo": f"assets/faces/{photo}", "size": SIZE,
                        "photo_to_frame": np.round(face.transform.matrix, 6).tolist()}
        if args.sheets:
            out = Path(args.sheets)
            out.mkdir(parents=True, exist_ok=True)
            edge = np.zeros(lm.shape, bool)
            edge[:-1] |= lm[:-1] != lm[1:]
            edge[:, :-1] |= lm[:, :-1] != lm[:, 1:]
            lines = frame.copy()
            lines[edge] = (255, 255, 255)
            for k in range(0, SIZE, 32):
                lines[k, ::4] = (0, 255, 0)
                lines[::4, k] = (0, 255, 0)
                cv2.putText(lines, str(k), (k + 1, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 0), 1)
                cv2.putText(lines, str(k), (1, k + 10), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 0), 1)
            blend = (0.45 * frame + 0.55 * PALETTE[lm]).astype(np.uint8)
            Image.fromarray(np.hstack([lines, blend])).save(out / f"{stem}.png")
        print(f"{stem}: classes {sorted(set(np.unique(lm).tolist()))}")
    frames_file.write_text(json.dumps(frames, indent=1) + "\n")


if __name__ == "__main__":
    main()
