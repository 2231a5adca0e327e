"""Write the bundled example masks into assets/masks/ (index PNGs + colour previews).

- drawn_face.png: a face drawn from ellipses and polygons in the generator frame (256 x 256:
  eyes at 47 % of the height a quarter of the width apart, mouth at 74 %), made by this script;
  no photo involved.
- short_hair.png: the same face with short hair and no visible neck line (a mask-editing example).

Run: .venv/bin/python scripts/make_example_masks.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from idface.images import save_label_map  # noqa: E402
from idface.labels import CLASS_INDEX as C  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "assets" / "masks"
S = 256


def ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, k: int) -> None:
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=k)


def drawn_face(long_hair: bool = True) -> np.ndarray:
    img = Image.new("L", (S, S), C["background"])
    d = ImageDraw.Draw(img)
    # clothes and neck
    d.polygon([(20, 256), (40, 222), (90, 205), (166, 205), (216, 222), (236, 256)], fill=C["cloth"])
    d.rectangle([100, 170, 156, 215], fill=C["neck"])
    ellipse(d, 128, 214, 28, 9, C["neck"])
    # hair behind the head
    if long_hair:
        ellipse(d, 128, 108, 84, 92, C["hair"])
        d.rectangle([46, 108, 210, 200], fill=C["hair"])
    else:
        ellipse(d, 128, 100, 74, 74, C["hair"])
    # ears, face
    ellipse(d, 66, 128, 9, 17, C["r_ear"])
    ellipse(d, 190, 128, 9, 17, C["l_ear"])
    ellipse(d, 128, 126, 60, 76, C["skin"])
    # fringe
    d.chord([64, 38, 192, 118], 180, 360, fill=C["hair"])
    # brows, eyes: l_* is the subject's left = the image's RIGHT (CelebAMask-HQ, idface.labels)
    d.polygon([(82, 103), (112, 99), (114, 105), (84, 108)], fill=C["r_brow"])
    d.polygon([(142, 99), (172, 103), (170, 108), (140, 105)], fill=C["l_brow"])
    ellipse(d, 96, 120, 11, 5, C["r_eye"])
    ellipse(d, 160, 120, 11, 5, C["l_eye"])
    # nose, lips, mouth
    d.polygon([(124, 122), (132, 122), (140, 156), (116, 156)], fill=C["nose"])
    ellipse(d, 128, 184, 22, 6, C["u_lip"])
    ellipse(d, 128, 192, 19, 6, C["l_lip"])
    d.rectangle([110, 187, 146, 189], fill=C["mouth"])
    return np.asarray(img, dtype=np.uint8)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    save_label_map(drawn_face(True), OUT / "drawn_face.png")
    save_label_map(drawn_face(False), OUT / "short_hair.png")
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")))


if __name__ == "__main__":
    main()
