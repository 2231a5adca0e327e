"""Parsers against the bundled reference maps: IoU per class and prepare_face timings.

    .venv/bin/python scripts/bench_parser.py [--parsers mesh+landmarks mesh landmarks] [--repeats 5] [--overlays DIR]

Reference: assets/reference/<name>_mask.png, hand-corrected maps of the six bundled photos in
the 512 generator frame, official side convention (see assets/reference/PROVENANCE.md: hair, neck,
clothes, ears and skin borders were corrected by hand; the face features come from the landmark
parser's polygons and so favour it). Each parser labels exactly that frame (the photo warped with
the matrix in assets/reference/frames.json; padding outside the photo marked as such), so the
detector does not move the comparison. IoU per class is summed over the six photos; "mean"
averages the classes present in the references or the prediction. Timings: median of `--repeats`
whole `prepare_face(photo, 512, parser=...)` calls per photo (decode, detect, align, parse) after
one warm-up, wall time and this process's CPU time, and of `detect_faces` alone for each of
`--detectors`; the CPU and load average are printed with them (shared cores: rough).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

FACES = ROOT / "assets" / "faces"
REFERENCE = ROOT / "assets" / "reference"
COARSE = ("background", "skin", "hair", "l_ear", "r_ear", "neck", "cloth")  # hand-corrected in the references
PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields.get('Model name', '?').strip()} (family {fields.get('CPU family', '?').strip()}, " \
               f"model {fields.get('Model', '?').strip()})"
    except OSError:
        return platform.processor() or "unknown CPU"


def class_iou(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> dict[int, tuple[int, int]]:
    """{class: (intersection, union)} for classes present in either map."""
    out = {}
    for c in range(num_classes):
        p, t = pred == c, ref == c
        union = int(np.logical_or(p, t).sum())
        if union:
            out[c] = (int(np.logical_and(p, t).sum()), union)
    return out


def main() -> None:
    import json

    from idface.faces import prepare_face
    from idface.faces.parse import parse_frame
    from idface.images import load_image
    from idface.labels import CLASS_NAMES, NUM_CLASSES, PALETTE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parsers", nargs="+", default=["mesh+landmarks", "mesh", "landmarks"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--detectors", nargs="*", default=["dlib_hog", "blazeface"], help="also time these detectors")
    ap.add_argument("--detail", action="store_true", help="also print hair, neck, clothes, ears per photo")
    ap.add_argument("--overlays", help="write photo | reference | prediction sheets here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; torch threads {args.threads}; load average {os.getloadavg()[0]:.1f}")
    frames = json.loads((REFERENCE / "frames.json").read_text())
    for parser in args.parsers:
        totals: dict[int, list[int]] = {}
        hair_no_hat = [0, 0]  # hair IoU summed over the photos whose reference has no hat
        times, cpu_times, per_photo = [], [], []
        for photo in PHOTOS:
            stem = Path(photo).stem
            ref = np.asarray(Image.open(REFERENCE / f"{stem}_mask.png"))
            rgb = load_image(FACES / photo)
            matrix = np.asarray(frames[stem]["photo_to_frame"], np.float64)  # [2, 3] photo -> frame
            frame = cv2.warpAffine(rgb, matrix, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            valid = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), matrix, (512, 512), flags=cv2.INTER_NEAREST,
                                   borderValue=0).astype(bool)
            label_map = parse_frame(frame, 512, parser, valid=valid).label_map  # [512, 512]
            if args.repeats:
                prepare_face(FACES / photo, 512, parser=parser)  # warm-up
            runs, cpu_runs = [], []
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                prepare_face(FACES / photo, 512, parser=parser)
                runs.append(time.perf_counter() - t)
                cpu_runs.append(time.process_time() - c)
            times.append(statistics.median(runs) if runs else float("nan"))
            cpu_times.append(statistics.median(cpu_runs) if cpu_runs else float("nan"))
            scores = class_iou(label_map, ref, NUM_CLASSES)
            if not (ref == CLASS_NAMES.index("hat")).any() and CLASS_NAMES.index("hair") in scores:
                hair_no_hat[0] += scores[CLASS_NAMES.index("hair")][0]
                hair_no_hat[1] += scores[CLASS_NAMES.index("hair")][1]
            for c, (i, u) in scores.items():
                totals.setdefault(c, [0, 0])
                totals[c][0] += i
                totals[c][1] += u
            per_photo.append((stem, np.mean([i / u for i, u in scores.values()])))
            if args.detail:
                print(f"  {parser} {stem}: " + "  ".join(
                    f"{CLASS_NAMES[c]} {i / u:.2f}" for c, (i, u) in scores.items()
                    if CLASS_NAMES[c] in ("background", "skin", "hair", "neck", "cloth", "l_ear", "r_ear")))
            if args.overlays:
                out = Path(args.overlays)
                out.mkdir(parents=True, exist_ok=True)
                blend = lambda m: (0.45 * frame + 0.55 * PALETTE[m]).astype(np.uint8)  # noqa: E731
                Image.fromarray(np.hstack([frame, blend(ref), blend(label_map)])).save(
                    out / f"{parser}_{stem}.png")
        ious = {CLASS_NAMES[c]: i / u for c, (i, u) in sorted(totals.items())}
        print(f"\n== {parser}: mean IoU {np.mean(list(ious.values())):.3f} over {len(ious)} classes; "
              f"prepare_face at 512: median {statistics.median(times) * 1000:.0f} ms wall, "
              f"{statistics.median(cpu_times) * 1000:.0f} ms CPU "
              f"(per photo {', '.join(f'{t * 1000:.0f}' for t in times)} ms; load average {os.getloadavg()[0]:.1f})")
        print("  " + "  ".join(f"{k} {v:.2f}" for k, v in ious.items()))
        coarse = [v for k, v in ious.items() if k in COARSE]
        print(f"  coarse classes ({', '.join(k for k in ious if k in COARSE)}): mean {np.mean(coarse):.3f}; "
              f"hair on the photos without a hat {hair_no_hat[0] / max(hair_no_hat[1], 1):.2f}")
        print("  per photo mIoU: " + ", ".join(f"{s} {v:.2f}" for s, v in per_photo))

    from idface.faces.detect import detect_faces

    photos = [load_image(FACES / p) for p in PHOTOS]
    for detector in args.detectors:
        medians = []
        for rgb in photos:
            detect_faces(rgb, detector)  # warm-up
            runs = []
            for _ in range(max(args.repeats, 1)):
                t = time.perf_counter()
                detect_faces(rgb, detector)
                runs.append(time.perf_counter() - t)
            medians.append(statistics.median(runs))
        print(f"\n== detector {detector}: median {statistics.median(medians) * 1000:.0f} ms per photo "
              f"({', '.join(f'{t * 1000:.0f}' for t in medians)} ms)")


if __name__ == "__main__":
    main()
