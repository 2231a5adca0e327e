"""About-one-megapixel test photos with the face filling most of the frame, made from the bundled
photos (assets/faces) because the project has no such photos of its own.

Each bundled photo is cropped to a square around its detected face (side = CROP_FACE_RATIO x the
detector's face width, centred on the face box, moved down by a tenth of the face so that the chin
and some neck fit, clamped to the photo) and resampled to SIDE x SIDE pixels with Pillow's Lanczos
filter. This is an UPSCALE for every bundled photo (factor 1.8 for Biden up to 6.5 for the
astronaut, whose face is 88 px wide): the results are smoother than a real photo taken at this
size (no sensor noise, soft skin texture), which makes hiding a change harder, not easier.

    photos = megapixel_faces()          # file name -> (uint8 [SIDE, SIDE, 3], upscale factor)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 1024                  # 1024 x 1024 = 1.05 megapixels
CROP_FACE_RATIO = 1.75       # crop side / detector face width: the face box is ~57 % of the width
FACES_DIR = Path(__file__).resolve().parents[2] / "assets" / "faces"


def crop_box(face_box: np.ndarray, shape: tuple[int, int], ratio: float = CROP_FACE_RATIO) -> tuple[int, int, int]:
    """(x0, y0, side): a square of side ratio x face width around the face box, inside the photo."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    width = x1 - x0
    side = int(round(min(ratio * width, shape[0], shape[1])))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * width
    left = int(round(np.clip(cx - side / 2, 0, shape[1] - side)))
    top = int(round(np.clip(cy - side / 2, 0, shape[0] - side)))
    return left, top, side


def megapixel_face(rgb: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, float]:
    """One photo -> (its face crop resampled to side x side with Lanczos, the upscale factor)."""
    from PIL import Image

    from idface.faces.detect import detect_faces

    face = detect_faces(rgb).chosen
    left, top, crop = crop_box(np.asarray(face.box), rgb.shape[:2])
    img = Image.fromarray(rgb[top:top + crop, left:left + crop])
    return np.asarray(img.resize((side, side), Image.LANCZOS)), side / crop


def megapixel_faces(names: list[str] | None = None, side: int = SIDE) -> dict[str, tuple[np.ndarray, float]]:
    """Bundled photo file name -> (its ~1 MP face crop, upscale factor)."""
    from idface.images import load_image

    names = names or sorted(p.name for p in FACES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return {name: megapixel_face(load_image(FACES_DIR / name), side) for name in names}
