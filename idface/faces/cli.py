"""`python -m idface parse PHOTO --out MASK.png`: parse a face photo into a 19-class label map.

Writes MASK.png (an index PNG: pixel values are CelebAMask-HQ class indices, the palette shows
the official colours) and MASK_color.png (colour preview). By default the map is in the
generator's aligned frame (--size 256 or 512) and --face-out saves that aligned face next to it;
--photo-frame puts the map on the photo's own pixels instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from idface.errors import InputError
from idface.faces.parse import PARSER_NAMES
from idface.labels import CLASS_INDEX, DISPLAY_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo", help="face photo (JPEG, PNG, WebP, ...)")
    parser.add_argument("--out", required=True, help="output index PNG (a _color.png preview is written beside it)")
    parser.add_argument("--size", type=int, default=256, choices=[256, 512], help="generator frame size (default 256)")
    parser.add_argument("--photo-frame", action="store_true", help="label the photo's own pixels instead of the aligned frame")
    parser.add_argument("--face-out", help="also save the aligned face (generator frame) to this PNG")
    parser.add_argument("--parser", default="auto", choices=["auto", *PARSER_NAMES],
                        help="parser (auto: facexlib network when its weights are local, else mesh+landmarks when the npm "
                             "face graphs and dlib's 68-point model are present, else mesh, else landmarks)")


def run(args: argparse.Namespace) -> int:
    from idface.faces.parse import parse_photo
    from idface.images import save_label_map

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must be a .png file (label maps are lossless index PNGs); got {out.name!r}")
    if not out.parent.exists():
        raise InputError(f"the output folder {str(out.parent)!r} does not exist")
    result, aligned = parse_photo(args.photo, parser=args.parser, size=args.size, photo_frame=args.photo_frame,
                                  what=f"photo {Path(args.photo).name}")
    save_label_map(result.label_map, out, preview=True)
    if args.face_out:
        Image.fromarray(aligned.image).save(args.face_out)
    present = sorted({int(v) for v in set(result.label_map.flatten().tolist())})
    print(f"{Path(args.photo).name}: {aligned.message} (detector: {aligned.face.detector})")
    print(f"parser: {result.method}; classes: {', '.join(DISPLAY_NAMES[i] for i in present)}")
    if result.missing_classes:
        print(f"this parser cannot produce: {', '.join(DISPLAY_NAMES[CLASS_INDEX[c]] for c in result.missing_classes)}")
    for note in result.notes:
        if " parser refused " in note:
            print(note)
    from idface.faces.mesh_parser import MESH_MODELS_NOTE
    from idface.faces.parse import LANDMARK_MODEL_NOTE

    if result.method == "landmarks":
        print(f"uses {LANDMARK_MODEL_NOTE}")
    elif result.method == "mesh":
        print(f"uses {MESH_MODELS_NOTE}")
    elif result.method == "mesh+landmarks":
        print(f"uses {MESH_MODELS_NOTE} and {LANDMARK_MODEL_NOTE}")
    print(f"wrote {out} and {out.with_name(out.stem + '_color.png')}")
    return 0
