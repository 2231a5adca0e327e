"""Benchmark and parity check of the PyTorch port of dlib's face-recognition ResNet.

    .venv/bin/python scripts/bench_dlib_resnet.py [--repeats 15] [--threads 2,1]

Prints: .dat parse and conversion time, cache load time, parity with dlib's own
compute_face_descriptor on the six bundled photos (fp32 and fp64), forward latency per chip at
batch 1 and 8 (fp32, fp64, and fp32 forward+backward, which the concealment attacks need), and
dlib's own descriptor latency measured in the same run. Chips are made by dlib itself (HOG
detector, best-scoring face, 5-point predictor, get_face_chip(size=150, padding=0.25)).

Timings are the median and the minimum of --repeats rounds; each round runs every variant once
(torch and dlib alike), so contention on shared cores hits all of them. The load average is
printed, so contended numbers can be recognised. torch is timed at each --threads count: on two
oversubscribed cores one intra-op thread is often faster than two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


def timings(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) milliseconds of fn()."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """(median, min) milliseconds per function, running them in turn each round."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                samples[name].append((time.perf_counter() - start) * 1000)
    return {name: (statistics.median(v), min(v)) for name, v in samples.items()}


def fmt(ms: tuple[float, float], per: int = 1) -> str:
    return f"median {ms[0] / per:7.1f} ms   min {ms[1] / per:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", default="2,1", help="torch intra-op thread counts to time, comma-separated")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    thread_counts = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(thread_counts[0])
    from idface import weights
    from idface.identity import dlib_resnet as dr

    print(f"torch {torch.__version__}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f} (cores may be shared with other jobs)")

    # ---- conversion and cache
    dat = weights.dlib_model_path(dr.RESNET_FILE)
    start = time.perf_counter()
    net = dr.read_dlib_dat(dat)
    parse_ms = (time.perf_counter() - start) * 1000
    print(f"\n.dat: {dat} ({dat.stat().st_size / 1e6:.1f} MB, {len(net.layers)} layers)")
    print(f"parse .dat (own reader):              {parse_ms:7.1f} ms")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        dr.load_dlib_resnet(cache=cache)
        convert_ms = (time.perf_counter() - start) * 1000
        (cached,) = Path(cache).glob("*.safetensors")
        print(f"first load: parse+convert+save cache: {convert_ms:7.1f} ms  ({cached.stat().st_size / 1e6:.1f} MB safetensors)")
        load = timings(lambda: dr.load_dlib_resnet(cache=cache), max(3, args.repeats // 3), warmup=0)
        print(f"load from cache:                      {fmt(load)}")
        model = dr.load_dlib_resnet(cache=cache)
        model64 = dr.load_dlib_resnet(cache=cache, dtype=torch.float64)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")

    # ---- reference chips and dlib's descriptors
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights.dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    recognizer = dlib.face_recognition_model_v1(str(dat))
    chips = []
    for name in PHOTOS:
        rgb = np.asarray(Image.open(ROOT / "assets" / "faces" / name).convert("RGB"))
        boxes, scores, _ = detector.run(rgb, 1 if max(rgb.shape[:2]) <= 800 else 0)
        shape = predictor(rgb, boxes[int(np.argmax(scores))])
        chips.append(dlib.get_face_chip(rgb, shape, size=dr.INPUT_SIZE, padding=dr.CHIP_PADDING))
    reference = np.stack([np.array(recognizer.compute_face_descriptor(c)) for c in chips])

    batch = dr.chips_from_uint8(np.stack(chips))  # [6, 3, 150, 150]
    with torch.inference_mode():
        ours32 = model(batch).double().numpy()
        ours64 = model64(batch.double()).numpy()
    print("\nparity with dlib.compute_face_descriptor (max abs difference over 128 dims):")
    for i, name in enumerate(PHOTOS):
        d32 = np.abs(ours32[i] - reference[i]).max()
        d64 = np.abs(ours64[i] - reference[i]).max()
        print(f"  {name:18s} fp32 {d32:.2e}   fp64 {d64:.2e}")
    print("distances (ours / dlib):")
    for a, b in [(2, 3), (2, 4), (3, 4), (2, 5), (0, 1)]:
        ours = np.linalg.norm(ours32[a] - ours32[b])
        theirs = np.linalg.norm(reference[a] - reference[b])
        verdict = "same" if ours < dr.SAME_PERSON_DISTANCE else "different"
        print(f"  {PHOTOS[a]:16s} {PHOTOS[b]:16s} {ours:.4f} / {theirs:.4f}  -> {verdict}")

    # ---- latency: every round runs each variant once, so shared-core contention hits all alike
    chips8 = [chips[i % len(chips)] for i in range(8)]
    for threads, size in [(t, s) for t in thread_counts for s in (1, 8)]:
        torch.set_num_threads(threads)
        if size == 1:
            print(f"\nlatency per chip, torch with {threads} thread(s) ({args.repeats} interleaved rounds, "
                  f"load average {os.getloadavg()[0]:.2f}):")
        x = dr.chips_from_uint8(np.stack(chips8[:size]))
        x64 = x.double()

        def fwd32():
            with torch.inference_mode():
                model(x)

        def fwd64():
            with torch.inference_mode():
                model64(x64)

        def fwd_bwd():
            xg = x.clone().requires_grad_(True)
            model(xg).square().sum().backward()

        def dlib_descriptor():
            if size == 1:
                recognizer.compute_face_descriptor(chips8[0])
            else:
                recognizer.compute_face_descriptor(chips8[:size])

        variants = {
            "torch fp32 forward": fwd32,
            "torch fp64 forward": fwd64,
            "torch fp32 fwd+backward": fwd_bwd,
            "dlib compute_face_descriptor": dlib_descriptor,
        }
        for name, ms in interleaved(variants, args.repeats).items():
            print(f"  batch {size}: {name:30s} {fmt(ms, size)}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
