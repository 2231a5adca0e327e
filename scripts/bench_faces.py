"""Time the faces and identity stages on this machine and print medians (milliseconds).

    .venv/bin/python scripts/bench_faces.py [--repeats 7] [--threads 2]

Stages: decoding, detection (dlib HOG + 5 points, on each bundled photo), alignment to each
template, parsing (the active parser at 512 in the generator frame), and each recognizer
(aligned chip forward, forward + backward through embed_frame, whole photo). ArcFace runs with
its real weights when present, else with a randomly initialised IR-SE50 (same architecture and
cost; marked "random weights"). Timings depend on what else runs on the machine: the CPUs here
are shared, so read them as rough medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

FACES = ROOT / "assets" / "faces"
PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (lazy loads, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def row(name: str, ms: float, note: str = "") -> None:
    print(f"{name:<48} {ms:9.1f} ms  {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from idface.faces import prepare_face
    from idface.faces.align import align_face, frame_to_template
    from idface.faces.detect import detect_faces, init_detection_model
    from idface.faces.parse import init_parsing_model, parse_aligned
    from idface.identity.registry import get_recognizer, recognizer_status
    from idface.images import load_image

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs (shared), "
          f"median of {args.repeats}")
    print(f"detector: {init_detection_model('auto').name}; parser: {init_parsing_model('auto').name}")
    rgbs = {name: load_image(FACES / name) for name in PHOTOS}
    for name in PHOTOS:
        h, w = rgbs[name].shape[:2]
        row(f"decode {name} ({w}x{h})", median_ms(lambda: load_image(FACES / name), args.repeats))
    for name in PHOTOS:
        h, w = rgbs[name].shape[:2]
        row(f"detect {name} ({w}x{h})", median_ms(lambda: detect_faces(rgbs[name]), args.repeats))
    rgb = rgbs["obama.jpg"]
    face = detect_faces(rgb).chosen
    for template, size in (("generator", 256), ("generator", 512), ("arcface", None), ("dlib", None)):
        row(f"align obama.jpg -> {template} {size or ''}",
            median_ms(lambda: align_face(rgb, face.landmarks, template, size, dlib5=face.dlib5), args.repeats))
    frames = torch.rand(1, 3, 256, 256)
    row("frame_to_template 256 -> arcface 112 (grid_sample)", median_ms(lambda: frame_to_template(frames, "arcface"), args.repeats))
    for name in ("obama.jpg", "grace_hopper.jpg"):
        f = detect_faces(rgbs[name]).chosen
        row(f"parse {name} ({init_parsing_model('auto').name}, 512 frame)",
            median_ms(lambda: parse_aligned(rgbs[name], f), max(3, args.repeats // 2)))
    row("prepare_face obama.jpg (decode+detect+align+parse)", median_ms(lambda: prepare_face(FACES / "obama.jpg"), 3))

    status = recognizer_status()
    recognizers = []
    for name, st in status.items():
        if st == "available":
            recognizers.append((name, get_recognizer(name), ""))
        elif name == "arcface":
            from idface.identity.arcface import ArcFaceRecognizer, build_arcface_ir_se50

            rec = ArcFaceRecognizer.__new__(ArcFaceRecognizer)
            from idface.identity.base import Recognizer

            Recognizer.__init__(rec, build_arcface_ir_se50(), "cpu")
            recognizers.append((name, rec, "(random weights: timing only; real weights unavailable here)"))
    for name, rec, note in recognizers:
        s = rec.input_size
        one = torch.rand(1, 3, s, s)
        eight = torch.rand(8, 3, s, s)
        with torch.inference_mode():
            row(f"{name}: embed_aligned 1 chip {s}x{s}", median_ms(lambda: rec.embed_aligned(one), args.repeats), note)
            row(f"{name}: embed_aligned 8 chips", median_ms(lambda: rec.embed_aligned(eight), args.repeats), note)

        def fwd_bwd():
            x = torch.rand(1, 3, 256, 256, requires_grad=True)
            rec.embed_frame(x).sum().backward()

        row(f"{name}: embed_frame 256 forward+backward", median_ms(fwd_bwd, args.repeats), note)
        if not note:
            row(f"{name}: embed_photo obama.jpg (detect+align+embed)", median_ms(lambda: rec.embed_photo(rgb), args.repeats))


if __name__ == "__main__":
    main()
