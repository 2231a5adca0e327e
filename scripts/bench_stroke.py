"""Browser benchmark: paint a stroke in the app and wait for the new generated face.

    .venv/bin/python scripts/bench_stroke.py [--checkpoint DIR_OR_REPO] [--strokes 12]

Launches the app on loopback, drives Debian's Chromium (Playwright), paints strokes of alternating
classes and prints the median stroke-to-image time (mouse release -> new output image in the page)
with the server-side split: generator pass, recognizer scoring, and the rest (Gradio queue,
PNG encoding, transfer, browser). Without --checkpoint it uses the checkpoint the app would find,
or else a "tiny"-preset plumbing checkpoint made in a temporary folder (random weights).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]


def timed(obj, name: str, bucket: list[float]) -> None:
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - t)

    setattr(obj, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--strokes", type=int, default=12)
    args = parser.parse_args()

    import app
    from idface.testing import benchmark_engine, free_port
    from idface.testing.browser import chromium_page, outputs_after, paint_stroke, select_class, wait_ready

    engine = benchmark_engine(args.checkpoint)
    if engine is None:
        return 1
    print(f"checkpoint: {engine.checkpoint_label} (image {engine.image_size}px); "
          f"recognizers: {', '.join(engine.recognizers())}; torch threads: {__import__('torch').get_num_threads()}")

    gen_times: list[float] = []
    pipe_times: list[float] = []
    score_times: list[float] = []
    timed(engine, "generate", gen_times)
    timed(engine, "_run_pipeline", pipe_times)
    timed(engine, "score_faces", score_times)

    demo = app.build_demo(engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **app.LAUNCH_KWARGS)
    classes = ["Hat", "Hair", "Skin", "Clothes"]
    latencies = []
    try:
        with chromium_page() as page:
            wait_ready(page, url)
            time.sleep(1.0)
            for i in range(args.strokes + 1):
                select_class(page, classes[i % len(classes)])
                y = 0.15 + 0.05 * (i % 12)
                if i == 1:
                    first = (len(gen_times), len(pipe_times), len(score_times))
                released = paint_stroke(page, [(0.25, y), (0.5, y + 0.04), (0.75, y)])
                shown = outputs_after(page, released)
                if i:  # the first stroke warms up
                    latencies.append((shown - released) / 1000.0)
                time.sleep(0.3)
    finally:
        demo.close()

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    gen_ms, pipe_ms, score_ms = (med(xs[k:]) * 1e3 for xs, k in zip((gen_times, pipe_times, score_times), first))
    lat = sorted(latencies)
    print(f"strokes: {len(lat)}")
    print(f"stroke-to-image median {med(lat) * 1e3:.0f} ms  (min {lat[0] * 1e3:.0f}, max {lat[-1] * 1e3:.0f})")
    print(f"server: generate {gen_ms:.0f} ms = generator pass {pipe_ms:.0f} ms + recognizer scoring "
          f"{score_ms:.0f} ms; rest (queue, PNG, transfer, browser) {med(lat) * 1e3 - gen_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
