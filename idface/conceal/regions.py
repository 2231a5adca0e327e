"""Which pixels an attack may change: class names of the 19-class parser, plus a few groups.

    parse_regions("skin,hair")      -> (1, 13)
    parse_regions("face")           -> skin, nose, eyes (with glasses), brows, lips, mouth
    region_mask(label_map, classes, erode_px)
                                    -> [H, W] bool in the photo's own pixels, from the parser's
                                       label map (generator frame, 512) warped back (nearest),
                                       eroded so that it does not spill past the parser's classes
                                       (the map is coarse at the border and the parser is not exact)
"""

from __future__ import annotations

import cv2
import numpy as np

from idface.errors import InputError
from idface.labels import CLASS_INDEX, CLASS_NAMES

REGION_GROUPS: dict[str, tuple[str, ...]] = {
    # the eyes with the glasses worn over them (eye_g, as in "eyes"): without it, a face with glasses
    # lost the whole eye region (the parser labels the band around the eyes eye_g) to a hole in the mask
    "face": ("skin", "nose", "l_eye", "r_eye", "eye_g", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"),
    "eyes": ("l_eye", "r_eye", "eye_g"),
    "brows": ("l_brow", "r_brow"),
    "lips": ("mouth", "u_lip", "l_lip"),
    "ears": ("l_ear", "r_ear", "ear_r"),
    "all": tuple(n for n in CLASS_NAMES if n != "background"),
}
DEFAULT_REGIONS = "face"
PARSE_FRAME = 512


def parse_regions(spec: str | list[str] | tuple | None) -> tuple[int, ...]:
    """'skin,hair' / ['skin', 'hair'] / group names -> sorted class indices (background refused)."""
    if spec is None or spec == "" or spec == []:
        spec = DEFAULT_REGIONS
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if str(n).strip()]
    if not names:
        raise InputError("no regions given; name classes such as skin,hair or a group: " + ", ".join(REGION_GROUPS))
    out: set[int] = set()
    for name in names:
        if name in REGION_GROUPS:
            out.update(CLASS_INDEX[n] for n in REGION_GROUPS[name])
        elif name in CLASS_INDEX:
            if name == "background":
                raise InputError("the background cannot be a region to perturb (choose face parts)")
            out.add(CLASS_INDEX[name])
        else:
            raise InputError(
                f"unknown region {name!r}; use class names ({', '.join(CLASS_NAMES[1:])}) "
                f"or groups ({', '.join(REGION_GROUPS)})"
            )
    return tuple(sorted(out))


def region_names(classes: tuple[int, ...]) -> list[str]:
    return [CLASS_NAMES[k] for k in classes]


def photo_label_map(rgb: np.ndarray, face, parser: str = "auto") -> tuple[np.ndarray, str]:
    """The parser's 19-class map of a detected face, in the photo's own pixels -> (map, method)."""
    from idface.faces.align import align_face
    from idface.faces.parse import parse_aligned

    result = parse_aligned(rgb, face, size=PARSE_FRAME, parser=parser)
    _, transform = align_face(rgb, face.landmarks, "generator", PARSE_FRAME, dlib5=face.dlib5)
    h, w = rgb.shape[:2]
    back = cv2.warpAffine(result.label_map, transform.inverse, (w, h), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=CLASS_INDEX["background"])
    return back, result.method


def region_mask(label_map: np.ndarray, classes: tuple[int, ...], erode_px: int = 0) -> np.ndarray:
    """[H, W] bool: pixels whose class is one of `classes`, at least `erode_px` pixels inside the
    union of those classes (only the outer border shrinks; borders between chosen classes stay)."""
    mask = np.isin(label_map, np.asarray(classes, dtype=label_map.dtype))
    if erode_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
        mask = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return mask


def erosion_pixels(face_size: float, fraction: float) -> int:
    """Pixels to erode a region mask by for a face of `face_size` pixels (at least 1 when fraction > 0)."""
    return 0 if fraction <= 0 else max(1, int(round(fraction * face_size)))
