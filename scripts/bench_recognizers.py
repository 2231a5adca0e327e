"""Embedding time per face of every available recognizer, at batch 1 and 8, side by side.

    python scripts/bench_recognizers.py [--runs 15] [--threads 2] [--json]

Chips are real: the six bundled faces (assets/train, generator frame) warped to each recognizer's
template (8 = the six plus two repeated). Times are medians over --runs rounds of
`embed_aligned` (float32, no gradient) and of forward + backward (what concealment and the
identity loss need), divided by the batch size; each round runs every recognizer once, so
contention on shared cores hits all of them. Prints the CPU and the load average with the numbers,
and each recognizer's time relative to dlib-resnet's in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

FACES = ["obama", "obama2", "obama3", "biden", "astronaut", "grace_hopper"]


def cpu_name() -> str:
    try:
        info = {}
        for line in os.popen("lscpu").read().splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
        return f"{info.get('Model name', platform.processor())} (family {info.get('CPU family')}, model {info.get('Model')})"
    except OSError:
        return platform.processor() or "unknown CPU"


def frames() -> torch.Tensor:
    """[8, 3, 256, 256] in [0, 1]: the six faces plus the first two again."""
    arrays = [np.asarray(Image.open(ROOT / "assets" / "train" / f"{n}.png").convert("RGB")) for n in FACES]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    return torch.cat([x, x[:2]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from idface.faces.align import frame_to_template
    from idface.identity.registry import available_recognizers, get_recognizer

    recs = {name: get_recognizer(name) for name in available_recognizers()}
    x = frames()
    chips = {name: frame_to_template(x, r.template, r.input_size).contiguous() for name, r in recs.items()}

    def infer(name, batch):
        with torch.inference_mode():
            recs[name].embed_aligned(chips[name][:batch])

    def train_step(name, batch):
        c = chips[name][:batch].clone().requires_grad_(True)
        recs[name].embed_aligned(c).square().sum().backward()

    cases = [(kind, b) for kind in ("embed", "embed+backward") for b in (1, 8)]
    samples = {(n, k, b): [] for n in recs for k, b in cases}
    for name in recs:  # warm-up
        for kind, b in cases:
            (infer if kind == "embed" else train_step)(name, b)
    for _ in range(args.runs):
        for name in recs:
            for kind, b in cases:
                start = time.perf_counter()
                (infer if kind == "embed" else train_step)(name, b)
                samples[(name, kind, b)].append((time.perf_counter() - start) / b)

    ms = {key: 1000 * statistics.median(v) for key, v in samples.items()}
    report = {
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "runs": args.runs,
        "ms_per_face": {name: {f"{k} batch {b}": round(ms[(name, k, b)], 2) for k, b in cases} for name in recs},
    }
    if "dlib-resnet" in recs:
        report["ratio_to_dlib_resnet"] = {
            name: {f"{k} batch {b}": round(ms[(name, k, b)] / ms[("dlib-resnet", k, b)], 2) for k, b in cases}
            for name in recs}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"CPU: {report['cpu']}; torch threads {report['torch_threads']}; "
          f"load average {', '.join(f'{v:.2f}' for v in report['load_average'])}; median of {args.runs} rounds")
    header = "".join(f"{f'{k} b{b}':>20}" for k, b in cases)
    print(f"{'ms per face':<14}{header}")
    for name in recs:
        cells = ""
        for k, b in cases:
            ratio = report.get("ratio_to_dlib_resnet", {}).get(name, {}).get(f"{k} batch {b}")
            cells += f"{ms[(name, k, b)]:>12.1f}" + (f" (x{ratio:<4.2f})" if ratio is not None else " " * 8)
        print(f"{name:<14}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
