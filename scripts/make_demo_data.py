"""Make the bundled demo checkpoint's training data from the photos that ship in assets/faces.

    python scripts/make_demo_data.py            # writes assets/train/ (and a contact sheet)

For every photo: the face aligned to the generator frame (idface.faces.prepare_face, 256x256) and
a 19-class label map. The map starts as the offline parser's output (idface.faces.parse, the
"landmarks" parser: dlib 68 points + classical processing) and is then corrected by the edits
listed below, each one written down here so the maps can be regenerated and reviewed:

  1. body split (BODY): inside a per-photo body outline and below the jaw line, skin-coloured
     pixels joined to the chin are neck, the rest is cloth (the parser calls shadowed necks cloth
     and dark suits background);
  2. per-photo region edits (EDITS): polygons hand-traced on the aligned 256x256 frame (x, y in
     pixels; the alignment is deterministic, so they land on the same pixels every run), each
     painting one class, optionally only over some current classes;
  3. lower face: inside the hull of the jaw and brow landmarks nothing can be hair, neck, cloth,
     hat or background -> skin;
  4. facial features (brows, eyes, nose, lips, mouth) are never overwritten by 1-3: they come from
     the parser's landmark polygons, which were checked on every photo.

Output in assets/train/: <name>.png (aligned RGB), <name>_mask.png (uint8 class indices,
idface.labels order), <name>_mask_color.png (official palette preview), and
assets/train/contact_sheet.png (photo | map | overlay) that was looked at before committing.

Recoloured copies (assets/train/recolour/<name>_<k>.png, same label map): hair, clothes and
background each shifted to a random colour (texture kept: the region's mean colour is moved,
edges feathered by a pixel). With six photos every mask is also a person's name tag, so a
generator can paint each region's colour from the mask's shape alone and ignore its style code;
these copies make the class codes the only source of a region's colour, which is what style
transfer and region swaps rely on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from idface.faces import prepare_face  # noqa: E402
from idface.faces.parse import LandmarkParser  # noqa: E402
from idface.images import save_label_map  # noqa: E402
from idface.labels import CLASS_INDEX as C, index_to_color, validate_label_map  # noqa: E402

PHOTOS = ("astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
FRAME = 256
RECOLOURS_PER_PHOTO = 3
RECOLOUR_SEED = 7
# region groups recoloured independently, and the colours they may take (RGB 0-255)
RECOLOUR_GROUPS = {
    "hair": (("hair",), ((20, 18, 16), (60, 40, 25), (110, 75, 40), (170, 130, 80), (215, 190, 140),
                         (150, 150, 150), (225, 225, 220), (140, 60, 30))),
    "cloth": (("cloth",), None),       # any colour
    "background": (("background",), None),
}
FEATURES = {C[n] for n in ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")}


@dataclass
class Edit:
    cls: str  # class painted
    polygon: list[tuple[int, int]]  # frame pixels (x, y)
    only: tuple[str, ...] | None = None  # paint only over these current classes (None: any)
    why: str = ""


def _ellipse(centre, axes, n=32) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [(centre[0] + axes[0] * np.cos(a), centre[1] + axes[1] * np.sin(a)) for a in t]


# (1) region edits, hand-traced on the aligned 256 frame ------------------------------------------
EDITS: dict[str, list[Edit]] = {
    "astronaut": [],
    "grace_hopper": [
        Edit("hat", [(66, 0), (198, 0), (206, 40), (210, 98), (190, 86), (160, 78), (128, 75), (96, 78),
                     (66, 86), (44, 100), (38, 60), (48, 30)], ("hair", "skin"),
             "the uniform cap was parsed as hair"),
        Edit("eye_g", _ellipse((90, 130), (33, 22)) , ("skin", "nose", "hair"), "left lens and frame"),
        Edit("eye_g", _ellipse((167, 128), (34, 22)), ("skin", "nose", "hair"), "right lens and frame"),
        Edit("eye_g", [(118, 112), (138, 110), (138, 122), (118, 124)], ("skin", "nose"), "bridge"),
        Edit("eye_g", [(44, 110), (60, 112), (60, 119), (44, 117)], ("skin", "hair"), "left temple arm"),
        Edit("eye_g", [(198, 108), (212, 106), (212, 113), (198, 116)], ("skin", "hair"), "right temple arm"),
    ],
    "obama": [
        Edit("skin", [(58, 124), (56, 98), (64, 78), (80, 60), (104, 48), (128, 44), (154, 46), (178, 54),
                      (194, 70), (200, 92), (202, 124)], ("hair",),
             "forehead patches parsed as hair below the hairline"),
        Edit("r_ear", [(34, 112), (46, 108), (56, 118), (57, 160), (50, 172), (40, 166), (33, 146), (30, 124)],
             ("hair", "skin", "background"), "ear on the image's left (his right)"),
        Edit("l_ear", [(200, 112), (210, 108), (216, 114), (214, 146), (208, 168), (200, 164)],
             ("hair", "skin", "background"), "ear on the image's right (his left)"),
    ],
    "obama2": [
        Edit("skin", [(84, 106), (80, 72), (92, 52), (128, 44), (160, 46), (178, 56), (186, 80), (188, 106)],
             ("hair",), "forehead parsed as hair"),
        Edit("l_ear", [(214, 118), (228, 108), (242, 112), (244, 140), (236, 165), (222, 172), (214, 160)],
             ("hair", "skin", "background"), "ear on the image's right (his left) parsed as hair"),
        Edit("neck", [(150, 248), (170, 220), (190, 205), (200, 205), (196, 222), (186, 240), (178, 256),
                      (150, 256)], ("cloth", "background"), "shadowed neck between chin and collar"),
    ],
    "obama3": [
        Edit("neck", [(75, 238), (110, 250), (150, 244), (172, 214), (178, 230), (165, 256), (85, 256)],
             ("cloth", "background"), "shadowed neck inside the shirt collar"),
    ],
    "biden": [],
}

# (2) body outlines (person below the jaw: neck + cloth), frame pixels -----------------------------
BODY: dict[str, list[tuple[int, int]]] = {
    "astronaut": [(0, 206), (32, 197), (64, 195), (92, 190), (170, 190), (176, 210), (210, 220), (256, 236),
                  (256, 256), (0, 256)],
    "grace_hopper": [(0, 242), (40, 232), (62, 212), (80, 196), (190, 192), (205, 210), (240, 216), (256, 220),
                     (256, 256), (0, 256)],
    "obama": [(40, 256), (64, 226), (76, 200), (180, 200), (190, 222), (222, 240), (236, 256)],
    "obama2": [(90, 256), (100, 226), (120, 200), (200, 190), (222, 200), (256, 208), (256, 256)],
    "obama3": [(30, 256), (40, 200), (60, 190), (170, 190), (180, 230), (190, 256)],
    "biden": [(0, 248), (40, 232), (56, 206), (176, 200), (184, 240), (200, 256), (0, 256)],
}


def landmarks(frame: np.ndarray) -> np.ndarray:
    return LandmarkParser().landmarks68(frame)


def _poly_mask(points, shape=(FRAME, FRAME)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(points, np.float64)).astype(np.int32)], 1)
    return m.astype(bool)


def _components_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    n, comp = cv2.connectedComponents(mask.astype(np.uint8))
    keep = np.unique(comp[seed & mask])
    return np.isin(comp, keep[keep > 0])


def skin_distance(frame: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Chroma distance (Lab a*, b*) to the cheeks' skin, in standard deviations."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
    eye_dist = float(np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0)))
    yy, xx = np.mgrid[0:FRAME, 0:FRAME]
    samples = np.zeros((FRAME, FRAME), bool)
    for c in ((p[1] + p[31] + p[40]) / 3, (p[15] + p[35] + p[47]) / 3):
        samples |= (xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (0.12 * eye_dist) ** 2
    ab = lab[..., 1:]
    mean, std = ab[samples].mean(0), ab[samples].std(0) + 2.0
    light = lab[..., 0]
    d = np.sqrt((((ab - mean) / std) ** 2).sum(-1))
    too_dark = light < 0.3 * light[samples].mean()
    d[too_dark] = np.inf
    return d


def correct(name: str, frame: np.ndarray, parsed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = parsed.copy()
    p = landmarks(frame)
    yy, xx = np.mgrid[0:FRAME, 0:FRAME]
    features = np.isin(lm, list(FEATURES))

    # (1) body split below the jaw line
    jaw_y = np.interp(xx, p[0:17, 0], p[0:17, 1])
    below_jaw = yy > jaw_y
    protected = np.isin(lm, [C["l_ear"], C["r_ear"]]) | ((lm == C["hair"]) & (yy < p[8, 1]))
    body = _poly_mask(BODY[name]) & below_jaw & ~features & ~protected
    skin_like = skin_distance(frame, p) < 4.0
    face_w = float(p[16, 0] - p[0, 0])
    neck_band = np.abs(xx - p[8, 0]) < 0.36 * face_w + 0.3 * np.maximum(yy - p[8, 1], 0)
    neck = body & skin_like & neck_band
    neck = cv2.morphologyEx(neck.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    neck = cv2.morphologyEx(neck, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(bool) & body
    chin_seed = body & (np.abs(xx - p[8, 0]) < 20) & (yy < p[8, 1] + 12)
    neck = _components_touching(neck, chin_seed)
    lm[body] = C["cloth"]
    lm[neck] = C["neck"]
    # outside the body outline nothing below the jaw is neck/cloth
    stray = ~_poly_mask(BODY[name]) & below_jaw & np.isin(lm, [C["neck"], C["cloth"]])
    lm[stray] = C["background"]

    # (2) region edits (after the body split, so they can fix it)
    for e in EDITS[name]:
        region = _poly_mask(e.polygon) & ~features
        if e.only is not None:
            region &= np.isin(lm, [C[c] for c in e.only])
        lm[region] = C[e.cls]

    # (3) lower face is skin
    hull = cv2.convexHull(np.round(np.vstack([p[0:17], p[17:27]])).astype(np.int32))
    lower_face = np.zeros((FRAME, FRAME), np.uint8)
    cv2.fillConvexPoly(lower_face, hull, 1)
    fix = lower_face.astype(bool) & np.isin(lm, [C[c] for c in ("background", "hair", "neck", "cloth", "hat")])
    lm[fix] = C["skin"]

    # (4) features: restore the parser's feature pixels exactly
    lm[features] = parsed[features]
    return validate_label_map(lm), p


def recolour(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move the mean colour of hair, clothes and background (each independently) to a random
    colour, keeping each region's texture; region edges are feathered by about a pixel."""
    out = image.astype(np.float32)
    for classes, palette in RECOLOUR_GROUPS.values():
        region = np.isin(lm, [C[c] for c in classes])
        if region.sum() < 50:
            continue
        if palette is None:
            target = rng.uniform(20, 235, size=3)
        else:
            target = np.asarray(palette[rng.integers(len(palette))], np.float32) + rng.normal(0, 8, 3)
        shift = target - out[region].mean(0)
        alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 1.0)[..., None]
        out = out + alpha * shift
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray]], path: Path, scale: int = 1) -> None:
    tiles = []
    for frame, lm in rows:
        colour = index_to_color(lm)
        overlay = (0.55 * frame + 0.45 * colour).astype(np.uint8)
        tiles.append(np.concatenate([frame, colour, overlay], 1))
    sheet = np.concatenate(tiles, 0)
    if scale != 1:
        sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    Image.fromarray(sheet).save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "assets" / "train"))
    ap.add_argument("--cache", default=None, help="folder keeping aligned frames + parser output between runs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for photo in PHOTOS:
        name = Path(photo).stem
        cached = Path(args.cache) / f"{name}.npz" if args.cache else None
        if cached is not None and cached.is_file():
            data = np.load(cached)
            image, parsed, message = data["image"], data["parsed"], str(data["message"])
        else:
            face = prepare_face(REPO / "assets" / "faces" / photo, size=FRAME, parser="landmarks")
            image, parsed, message = face.image, face.label_map, face.message
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, image=image, parsed=parsed, message=message)
        lm, _ = correct(name, image, parsed)
        Image.fromarray(image).save(out / f"{name}.png")
        save_label_map(lm, out / f"{name}_mask.png")
        rows.append((image, lm))
        print(f"{name}: {message}; classes {sorted(set(np.unique(lm).tolist()))}")
    contact_sheet(rows, out / "contact_sheet.png")

    recolour_dir = out / "recolour"
    recolour_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(RECOLOUR_SEED)
    sheet = []
    for photo, (image, lm) in zip(PHOTOS, rows):
        name = Path(photo).stem
        copies = [recolour(image, lm, rng) for _ in range(RECOLOURS_PER_PHOTO)]
        for k, copy in enumerate(copies):
            Image.fromarray(copy).save(recolour_dir / f"{name}_{k}.png")
        sheet.append(np.concatenate([image] + copies, 1))
    Image.fromarray(np.concatenate(sheet, 0)).save(recolour_dir / "contact_sheet.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
