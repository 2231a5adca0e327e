"""Browser benchmark: upload a photo as the style face and wait for the first generated face.

    .venv/bin/python scripts/bench_upload.py [--checkpoint DIR_OR_REPO] [--uploads 3] [--photos a.jpg b.png]

Launches the app on loopback, drives Debian's Chromium (Playwright) and, for each bundled photo
(assets/faces) `--uploads` times, sets the style face's file input and waits until the generated
image in the page changes: wall time from handing the file to the page to the new image, as a
visitor sees it (upload, queue, the upload's step: decode, detect, align, parse, generate; PNG
encoding; transfer; browser), then until the identity bars hold the new face's scores (the next
step: the recognizers' embeddings and scores, the mask and attention pictures, the download).
Each upload is a fresh copy of the photo with a unique comment chunk (same pixels, new bytes), so
the app's cache of the bundled examples (keyed by the file's hash) never answers it: every upload
costs what a visitor's own photo costs. Prints the medians per photo and overall, the server-side
split (the page's handlers: face_changed = the upload's step, finish_generation = the scores' step;
both summed over Gradio's repeated change event) and the server's CPU time and load average.
Without --checkpoint it uses the checkpoint the app would find, or else a "tiny"-preset plumbing
checkpoint (random weights) in a temporary folder. Shared cores: rough.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "assets" / "faces"
PHOTOS = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


# the identity bars hold the new generated face's scores (the upload's second step has answered)
BARS_FILLED = ("() => { const b = document.querySelector('#identity_bars');"
               " return !!b && !b.innerText.includes('Scoring') && !!b.querySelector('.idbar-verdict'); }")
TRACE: list[tuple[str, float, float]] = []  # (handler, start, end) in time.time() seconds


def timed(obj, name: str, bucket: list[float]) -> None:
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t, wall = time.perf_counter(), time.time()
        try:
            return original(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - t)
            TRACE.append((name, wall, time.time()))

    setattr(obj, name, wrapper)


def unique_copy(photo: Path, folder: Path, n: int) -> Path:
    """A copy of a JPEG or PNG with the same pixels and different bytes: a comment (JPEG COM segment
    after SOI, PNG tEXt chunk after IHDR) saying which upload it is."""
    import struct
    import zlib

    data = photo.read_bytes()
    note = f"idface bench_upload {n}".encode()
    if data[:2] == b"\xff\xd8":
        data = data[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + data[2:]
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        body = b"tEXt" + b"Comment\x00" + note
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        data = data[:33] + chunk + data[33:]  # signature (8) + IHDR (25)
    else:
        raise ValueError(f"{photo.name}: neither JPEG nor PNG")
    out = folder / f"{n:03d}_{photo.name}"
    out.write_bytes(data)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--uploads", type=int, default=3, help="uploads of each photo (after one warm-up upload)")
    parser.add_argument("--photos", nargs="+", default=PHOTOS)
    parser.add_argument("--trace", action="store_true",
                        help="also print, per upload, when each handler ran (ms after the file was handed to the page)")
    args = parser.parse_args()

    import app
    import torch
    from bench_parser import cpu_name
    from idface.testing import benchmark_engine, free_port
    from idface.testing.browser import chromium_page, outputs_after, wait_ready
    from idface.ui import handlers

    engine = benchmark_engine(args.checkpoint)
    if engine is None:
        return 1
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}")
    print(f"checkpoint: {engine.checkpoint_label} (image {engine.image_size}px); "
          f"recognizers: {', '.join(engine.recognizers())}")

    import idface.faces

    buckets = {name: [] for name in ("handler face_changed", "  handler prepare_face", "  idface prepare_face",
                                     "  generate", "  embed", "handler finish_generation", "  score_faces")}
    # the upload's first step: prepare (decode, detect, align, parse), fitting note, mask, generate unscored
    timed(handlers.Handlers, "face_changed", buckets["handler face_changed"])
    timed(handlers.Handlers, "prepare_face", buckets["  handler prepare_face"])
    timed(idface.faces, "prepare_face", buckets["  idface prepare_face"])  # (engine.prepare imports it per call)
    timed(engine, "generate", buckets["  generate"])
    timed(engine, "_embed_frames", buckets["  embed"])  # every recognizer embedding (either step)
    # the second step: scores (the style face's and the generated face's embeddings), pictures, download
    timed(handlers.Handlers, "finish_generation", buckets["handler finish_generation"])
    timed(engine, "score_faces", buckets["  score_faces"])

    demo = app.build_demo(engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **app.LAUNCH_KWARGS)
    walls: dict[str, list[float]] = {p: [] for p in args.photos}
    server_cpu: list[float] = []  # this process's CPU seconds per upload until the image shows (server, all threads; not Chromium)
    server_cpu_bars: list[float] = []  # ... until the identity bars show
    bar_walls: list[float] = []
    split: dict[str, list[float]] = {name: [] for name in buckets}
    copies = Path(tempfile.mkdtemp(prefix="idface-bench-upload-"))
    try:
        with chromium_page() as page:
            wait_ready(page, url)
            time.sleep(1.0)
            file_input = "#style_in input[type=file]"
            order = [args.photos[-1]] + [p for _ in range(args.uploads) for p in args.photos]  # first: warm-up
            for i, photo in enumerate(order):
                counts = {name: len(b) for name, b in buckets.items()}
                upload = unique_copy(FACES / photo, copies, i)
                if page.locator(file_input).count() == 0:  # a photo is shown: clear it first (no timing)
                    page.click("#style_in button[aria-label='Clear']")
                    page.wait_for_selector(file_input, state="attached", timeout=30_000)
                started, started_wall = page.evaluate("() => [performance.now(), Date.now() / 1000]")
                n_trace = len(TRACE)
                cpu = time.process_time()
                page.set_input_files(file_input, str(upload))
                shown = outputs_after(page, started)
                cpu_shown = time.process_time() - cpu
                page.wait_for_function(BARS_FILLED, timeout=60_000)
                bars = page.evaluate("() => performance.now()")  # (polled: within ~0.1 s)
                if args.trace and i:
                    print(f"  {photo}: " + ", ".join(f"{name} {1e3 * (a - started_wall):.0f}-{1e3 * (b - started_wall):.0f}"
                                                     for name, a, b in TRACE[n_trace:] if not name.startswith("_"))
                          + f", shown {shown - started:.0f} ms, bars {bars - started:.0f} ms")
                if i:
                    walls[photo].append((shown - started) / 1000.0)
                    bar_walls.append((bars - started) / 1000.0)
                    server_cpu.append(cpu_shown)
                    server_cpu_bars.append(time.process_time() - cpu)
                    for name, b in buckets.items():
                        split[name].append(sum(b[counts[name]:]))
                time.sleep(0.5)
    finally:
        demo.close()
        shutil.rmtree(copies, ignore_errors=True)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    every = [t for ts in walls.values() for t in ts]
    print("upload-to-first-image median per photo: " + ", ".join(f"{p} {med(ts) * 1e3:.0f} ms" for p, ts in walls.items()))
    print(f"upload-to-first-image median {med(every) * 1e3:.0f} ms over {len(every)} uploads "
          f"(min {min(every) * 1e3:.0f}, max {max(every) * 1e3:.0f}); load average {os.getloadavg()[0]:.1f}")
    print("server handlers, median per upload: " + "; ".join(f"{name.strip()} {med(v) * 1e3:.0f} ms" for name, v in split.items()))
    print(f"rest of the first image's wall (upload, Gradio queue and events, output encoding, transfer, browser): "
          f"{med(every) * 1e3 - med(split['handler face_changed']) * 1e3:.0f} ms")
    print(f"upload-to-identity-bars median {med(bar_walls) * 1e3:.0f} ms")
    print(f"server CPU per upload (this process, all threads; under load the wall time is mostly waiting): "
          f"median {med(server_cpu) * 1e3:.0f} ms until the image shows, {med(server_cpu_bars) * 1e3:.0f} ms "
          "until the identity bars show")
    return 0


if __name__ == "__main__":
    sys.exit(main())
