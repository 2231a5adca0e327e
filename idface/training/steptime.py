"""Measure the training step time of a config on this machine (prints JSON).

    python -m idface.training.steptime --config tiny --batch-size 1 --steps 5
    python -m idface.training.steptime --config paper-256 --batch-size 1 --steps 3 --mixed-precision bf16

The step is the real one (idface.training.train.Trainer.train_step: G pass with every configured
loss, D pass, both Adam updates, EMA update) on random images and label maps written to a
temporary folder at the model's resolution; only the data differ from a real run. VGG19 and the
recognizer are used when this machine has their weights (the output says which terms ran).
Warm-up steps are excluded; the median of the timed steps (wall clock and this process's CPU
time) is reported with the load average, since other processes on a shared machine inflate the
wall-clock numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_random_data(folder: Path, n: int, size: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        # blocky label map: every class present somewhere
        coarse = rng.integers(0, 19, size=(8, 8), dtype=np.uint8)
        lab = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.NEAREST))
        Image.fromarray(img).save(folder / f"{i}.png")
        Image.fromarray(lab).save(folder / f"{i}_label.png")
        pairs.append({"image": str(folder / f"{i}.png"), "label": str(folder / f"{i}_label.png")})
    return pairs


def measure(config: str, batch_size: int, steps: int, warmup: int, mixed_precision: str | None,
            recognizer: str | None, count_flops: bool = False, random_vgg19: bool = False) -> dict:
    from idface.training.config import load_config
    from idface.training.train import Trainer

    cfg = load_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if random_vgg19:
            from torchvision.models.vgg import cfgs, make_layers

            from idface.weights import VGG19_FILENAME

            features = make_layers(cfgs["E"], batch_norm=False)
            torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp / VGG19_FILENAME)
            os.environ["IDFACE_VGG19"] = str(tmp / VGG19_FILENAME)
        from idface.training.train import build_model

        size = build_model(cfg).config.image_size
        cfg.data = {"pairs": write_random_data(tmp, max(2, batch_size), size)}
        cfg.batch_size = batch_size
        cfg.grad_accum = 1
        cfg.num_workers = 0
        cfg.max_steps = warmup + steps + 1
        cfg.output_dir = str(tmp / "run")
        if mixed_precision:
            cfg.mixed_precision = mixed_precision
        if recognizer:
            cfg.identity_recognizer = recognizer
            if recognizer != "none":
                from idface.identity.registry import get_recognizer

                # e.g. dlib-resnet (128-d) standing in for ArcFace (512-d) where ArcFace has no weights
                cfg.model = {**cfg.model, "identity_dim": get_recognizer(recognizer).embedding_dim, "identity_recognizer": recognizer}
        trainer = Trainer(cfg, resume="none", progress=False)
        batches = trainer.micro_batches()
        times, cpu_times = [], []
        logs = {}
        for i in range(warmup + steps):
            batch = next(batches)
            t0, c0 = time.perf_counter(), time.process_time()
            logs = trainer.train_step([batch])
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
        flops = None
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                trainer.train_step([next(batches)])
            flops = counter.get_total_flops()
        counts = trainer.G_plain.parameter_counts()
        return {
            "config": cfg.name, "image_size": size, "batch_size": batch_size,
            "mixed_precision": cfg.mixed_precision, "device": str(trainer.device),
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
            "sec_per_step_median": statistics.median(times), "sec_per_step_all": [round(t, 3) for t in times],
            "cpu_sec_per_step_median": statistics.median(cpu_times),
            "images_per_sec": batch_size / statistics.median(times),
            "flop_per_step": flops,
            "achieved_gflop_per_sec": None if flops is None else flops / statistics.median(times) / 1e9,
            "loss_terms": sorted(k for k in logs if k.startswith("g_") and k != "g_total"),
            "switched_off": trainer.disabled,
            "vgg19": "random weights (timing only: same cost as the ImageNet file)" if random_vgg19 else "as found on this machine",
            "generator_side_params": counts["total"],
            "discriminator_params": sum(p.numel() for p in trainer.D_plain.parameters()),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"])
    parser.add_argument("--recognizer", default=None, help="override the identity recognizer (e.g. dlib-resnet, none)")
    parser.add_argument("--flops", action="store_true", help="also count the FLOPs of one step (torch's flop counter: matmuls and convolutions, forward and backward)")
    parser.add_argument("--random-vgg19", action="store_true", help="time the perceptual loss with a randomly initialised VGG19 where the ImageNet file is missing (cost is the same)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.config, args.batch_size, args.steps, args.warmup, args.mixed_precision, args.recognizer,
                             args.flops, args.random_vgg19), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
