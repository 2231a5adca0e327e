"""`python -m idface bench [--json]`: measure the networks on this machine, in one run.

Reports, for one preset (default paper-256, batch 1):
  - parameter counts (style encoder, identity projection, generator with mask embedder);
  - FLOPs per image (torch.utils.flop_counter.FlopCounterMode) of the generator on a mask edit
    (context folded once and cached), of folding the context, and of the style encoder;
  - generator latency, median of --runs runs after --warmup runs, in each mode:
      fp32           channels_last, float32
      bf16-autocast  channels_last, torch.autocast(cpu, bfloat16)
      bf16           channels_last, weights and activations bfloat16 (norms and softmax
                     accumulate in float32 inside their kernels), folded context computed in
                     float32 and rounded once
      fp32-folded    every transformer block folded with the context (idface.model.folding:
                     exact algebra, fewer FLOPs), float32
      bf16-folded    the bfloat16 generator with the blocks folded in float32 and rounded once
      pipeline       exactly what IdFacePipeline runs here (its precision, IDFACE_PRECISION or
                     --pipeline-precision, and its per-stage fold plan: idface.model.fold_plan,
                     timed once per machine and cached; `pipeline_mode` in the report says which
                     stages run folded and why), with its ratio to the fastest mode of the run
    timed round-robin (one run of every mode per round, so load from other jobs hits them alike),
    with each mode's difference from fp32 on the same input (max / mean abs on [-1, 1], PSNR);
    plus the FLOPs and float32 time of folding the blocks for a new context;
  - style encoder latency (fp32, bf16-autocast);
  - matmul peak (fp32, bf16): the best of one trial per round, interleaved with the modes (a
    matrix of --peak-size, or smaller where one product would take over 0.1 s: bf16 without
    hardware support is 100x slower), achieved GFLOP/s and achieved / peak; the folded-FLOP roofline
    (folded GFLOP / best peak) and the pipeline's time over it;
  - the load average, since the cores may be shared, and each mode's CPU time per image (all
    threads; divided by the thread count it estimates the wall time on idle cores). On shared
    cores OpenMP's spinning threads collapse when other jobs compete;
    `OMP_WAIT_POLICY=PASSIVE python -m idface bench` is the fairer measurement there (the report
    records the policy).
Without --checkpoint the weights are random, with the zero-initialised output projections
randomised (otherwise the transformer blocks would be skipped numerically and the parity check
would say nothing).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Callable

import torch

from idface.labels import CLASS_INDEX
from idface.model import ContextKV, IdFaceModel, get_config
from idface.tensors import onehot

MODES = ("fp32", "bf16-autocast", "bf16", "fp32-folded", "bf16-folded", "pipeline")
FOLDED = ("fp32-folded", "bf16-folded")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper-256", help="model preset (default paper-256)")
    parser.add_argument("--checkpoint", default=None,
                        help="benchmark these weights (folder or org/name[@rev]) instead of random ones")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per mode (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--pipeline-precision", default=None,
                        help="the pipeline mode's precision (default: IDFACE_PRECISION, as the app)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak (default 2048)")
    parser.add_argument("--skip-style", action="store_true", help="skip the style encoder timing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def median_seconds(fn: Callable[[], object], runs: int, warmup: int,
                   cpu_times: list[float] | None = None) -> tuple[float, list[float]]:
    """Median wall time; also appends each run's process CPU time (all threads) to cpu_times."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - start_cpu)
    return statistics.median(times), times


def count_flops(fn: Callable[[], object]) -> int:
    """FlopCounterMode, plus the CPU flash-attention kernel, which torch's registry leaves out
    (it would count the 64x64 self-attention as zero)."""
    from torch.utils import flop_counter

    def attention_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
        b, h, n, d = q_shape
        return 2 * b * h * n * k_shape[-2] * (d + v_shape[-1])       # Q K^T and P V

    cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    with flop_counter.FlopCounterMode(display=False, custom_mapping={cpu_flash: attention_flops}) as counter:
        fn()
    return int(counter.get_total_flops())


class MatmulPeak:
    """Best-of-trials matmul throughput of one dtype: call trial() now and then (interleaved with
    other work, so a burst of load from other jobs does not set the figure), read best()."""

    def __init__(self, dtype: torch.dtype, max_size: int = 2048, grow_below_s: float = 0.05):
        self.dtype = dtype
        n = min(256, max_size)
        while n * 2 <= max_size:          # double while one product takes under grow_below_s
            a = torch.randn(n, n).to(dtype)
            torch.mm(a, a)
            start = time.perf_counter()
            torch.mm(a, a)
            if time.perf_counter() - start >= grow_below_s:
                break
            n *= 2
        self.size = n
        self.a, self.b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        self.wall: list[float] = []
        self.cpu: list[float] = []
        torch.mm(self.a, self.b)          # warm-up

    def trial(self) -> None:
        start, start_cpu = time.perf_counter(), time.process_time()
        torch.mm(self.a, self.b)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(time.process_time() - start_cpu)

    def best(self) -> tuple[float, float]:
        """(GFLOP per wall second, GFLOP per CPU second of all threads), each the best trial."""
        flop = 2 * self.size**3
        return flop / min(self.wall) / 1e9, flop / max(min(self.cpu), 1e-9) / 1e9


def matmul_peak(dtype: torch.dtype, n: int = 2048, runs: int = 5) -> tuple[float, float]:
    """(GFLOP per wall second, GFLOP per CPU second of all threads): best of `runs` trials of a
    matmul of at most n x n (smaller where one product would be slow, e.g. bf16 without hardware
    support)."""
    peak = MatmulPeak(dtype, n)
    for _ in range(runs):
        peak.trial()
    return peak.best()


def cpu_name() -> str:
    from idface.weights import cpu_identity

    return cpu_identity()["model_name"]


def example_inputs(config, seed: int = 0):
    """A face-like layout (hair, skin, eyes, mouth, cloth, background) and a random style."""
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    lm = torch.full((s, s), CLASS_INDEX["skin"], dtype=torch.long)
    lm[: s * 3 // 8] = CLASS_INDEX["hair"]
    lm[:, : s // 8] = CLASS_INDEX["background"]
    lm[s * 7 // 8:] = CLASS_INDEX["cloth"]
    lm[s // 2: s // 2 + s // 16, s * 5 // 16: s * 7 // 16] = CLASS_INDEX["l_eye"]
    lm[s // 2: s // 2 + s // 16, s * 9 // 16: s * 11 // 16] = CLASS_INDEX["r_eye"]
    lm[s * 11 // 16: s * 3 // 4, s * 3 // 8: s * 5 // 8] = CLASS_INDEX["mouth"]
    mask = onehot(lm)  # [1, K, S, S]
    image = torch.rand(1, 3, s, s, generator=g) * 2 - 1
    embedding = torch.randn(1, config.identity_dim, generator=g)
    return mask.contiguous(memory_format=torch.channels_last), image, embedding


def build_model(args) -> tuple[IdFaceModel, str]:
    if args.checkpoint:
        from idface.hub import resolve_checkpoint

        source = resolve_checkpoint(args.checkpoint)
        return IdFaceModel.from_pretrained(str(source.path)), source.describe()
    torch.manual_seed(0)
    model = IdFaceModel(get_config(args.preset))
    with torch.no_grad():
        for block in model.generator.transformer_blocks:
            block.proj_out.weight.normal_(std=0.02)
    return model, "random (zero-initialised output projections randomised, std 0.02)"


def to_bf16(kv: list[ContextKV]) -> list[ContextKV]:
    return [layer.to(torch.bfloat16) for layer in kv]


def run_bench(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        from idface.errors import InputError

        raise InputError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    load_before = os.getloadavg()
    model, weights = build_model(args)
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    config = model.config
    generator = model.generator
    mask, image, embedding = example_inputs(config)
    image = image.contiguous(memory_format=torch.channels_last)
    report: dict = {
        "preset": config.name, "image_size": config.image_size, "batch": 1, "weights": weights,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "load_average_before": [round(x, 2) for x in load_before]},
        "parameters": model.parameter_counts(),
        "runs": args.runs, "warmup": args.warmup,
    }

    with torch.inference_mode():
        codes, _ = model.encode_style(image, mask)
        context = model.context(codes, model.identity_token(embedding))      # [1, 20, code_dim]
        kv = generator.fold_context(context)
        folded = generator.fold(context)
        flops = {
            "generator_cached_context": count_flops(lambda: generator(mask, context_kv=kv)),
            "generator_folded": count_flops(lambda: generator(mask, folded=folded)),
            "fold_context": count_flops(lambda: generator.fold_context(context)),
            "fold_blocks": count_flops(lambda: generator.fold(context)),
            "style_encoder": count_flops(lambda: model.encode_style(image, mask)),
        }
        fold_seconds, _ = median_seconds(lambda: generator.fold(context), 5, 1)
        report["fold_blocks_ms"] = round(fold_seconds * 1e3, 1)
        report["gflop_per_image"] = {k: float(f"{v / 1e9:.4g}") for k, v in flops.items()}
        from idface.engine import PRECISION
        from idface.pipeline import IdFacePipeline

        pipe = IdFacePipeline(model, precision=args.pipeline_precision or PRECISION)
        plan_start = time.perf_counter()
        plan = pipe.fold_plan                          # as the app decides it: env, cache or timing
        plan_ms = (time.perf_counter() - plan_start) * 1e3
        pipe_blocks = pipe.fold(context)
        flops["generator_pipeline"] = count_flops(lambda: pipe.run_generator(mask, pipe_blocks))
        report["gflop_per_image"]["generator_pipeline"] = float(f"{flops['generator_pipeline'] / 1e9:.4g}")
        same_as = {(True,) * len(plan.stages): f"{pipe.precision}-folded",
                   (False,) * len(plan.stages): pipe.precision}.get(plan.stages)
        report["pipeline_mode"] = {
            **plan.to_json(),
            "describe": plan.describe([config.base_resolution * 2**i for i in range(config.num_stages)]),
            "same_as": same_as,                        # a fixed mode it equals, or None (mixed)
            "decision_ms": round(plan_ms, 1),          # measuring (first time here) or reading the cache
        }

        reference = generator(mask, context_kv=kv).float()
        runners: dict[str, Callable[[], torch.Tensor]] = {}
        runners["fp32"] = lambda: generator(mask, context_kv=kv)

        def autocast_run() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return generator(mask, context_kv=kv)

        runners["bf16-autocast"] = autocast_run
        runners["fp32-folded"] = lambda: generator(mask, folded=folded)
        if "bf16" in modes or "bf16-folded" in modes:
            generator_bf16 = copy.deepcopy(generator).to(torch.bfloat16)
            kv_bf16, mask_bf16 = to_bf16(kv), mask.to(torch.bfloat16)
            folded_bf16 = [block.to(torch.bfloat16) for block in folded]
            runners["bf16"] = lambda: generator_bf16(mask_bf16, context_kv=kv_bf16)
            runners["bf16-folded"] = lambda: generator_bf16(mask_bf16, folded=folded_bf16)
        runners["pipeline"] = lambda: pipe.run_generator(mask, pipe_blocks)

        # Round-robin: every round one peak trial per dtype and one run of every mode, so that a
        # burst of load from other jobs hits all of them alike; --warmup rounds are not timed.
        peaks = {"fp32": MatmulPeak(torch.float32, args.peak_size),
                 "bf16": MatmulPeak(torch.bfloat16, args.peak_size)}
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for run in range(args.warmup + args.runs):
            for peak in peaks.values():
                peak.trial()
            for mode in modes:
                start, start_cpu = time.perf_counter(), time.process_time()
                runners[mode]()
                if run >= args.warmup:
                    wall[mode].append(time.perf_counter() - start)
                    cpu[mode].append(time.process_time() - start_cpu)
        best = {k: p.best() for k, p in peaks.items()}
        report["matmul_peak_gflops"] = {k: round(v[0], 1) for k, v in best.items()}
        report["matmul_peak_gflop_per_cpu_second"] = {k: round(v[1], 1) for k, v in best.items()}
        report["matmul_peak_trials"] = {k: {"size": p.size, "trials": len(p.wall)} for k, p in peaks.items()}

        report["generator"] = {}
        for mode in modes:
            out = runners[mode]().float()
            err = (out - reference).abs()
            mse = float(((out - reference) / 2).square().mean())            # on a [0, 1] scale
            seconds, cpu_seconds = statistics.median(wall[mode]), statistics.median(cpu[mode])
            precision = pipe.precision if mode == "pipeline" else "fp32" if mode.startswith("fp32") else "bf16"
            peak = report["matmul_peak_gflops"][precision]
            mode_flops = flops["generator_pipeline" if mode == "pipeline" else
                               "generator_folded" if mode in FOLDED else "generator_cached_context"]
            achieved = mode_flops / seconds / 1e9
            achieved_cpu = mode_flops / cpu_seconds / 1e9
            report["generator"][mode] = {
                "median_ms": round(seconds * 1e3, 1),
                "gflop": float(f"{mode_flops / 1e9:.4g}"),
                "min_ms": round(min(wall[mode]) * 1e3, 1),
                # CPU time of all threads per image: on shared cores, cpu_ms / threads estimates
                # the wall time on idle ones better than the wall time does
                "cpu_ms": round(cpu_seconds * 1e3, 1),
                "achieved_gflops": float(f"{achieved:.4g}"),
                "achieved_over_peak": float(f"{achieved / peak:.3g}"),
                # the same ratio per CPU second (both sides): robust to other jobs on the cores
                "achieved_over_peak_cpu": float(
                    f"{achieved_cpu / report['matmul_peak_gflop_per_cpu_second'][precision]:.3g}"),
                "max_abs_diff_vs_fp32": round(float(err.max()), 5),
                "mean_abs_diff_vs_fp32": round(float(err.mean()), 6),
                "psnr_vs_fp32_db": round(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-20))).item(), 2),
            }

        if not args.skip_style:
            report["style_encoder"] = {}
            for mode in ("fp32", "bf16-autocast"):
                def style_run(mode=mode):
                    if mode == "fp32":
                        return model.encode_style(image, mask)
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return model.encode_style(image, mask)

                seconds, _ = median_seconds(style_run, max(3, args.runs // 2), 1)
                report["style_encoder"][mode] = {"median_ms": round(seconds * 1e3, 1)}

    timed = report["generator"]
    fixed = [m for m in timed if m != "pipeline"] or list(timed)
    fastest = min(fixed, key=lambda m: timed[m]["median_ms"])
    report["fastest_mode"] = fastest                   # of the fixed modes
    # the folded-FLOP roofline: folded GFLOP at the best matmul peak of the run (bf16 where the
    # CPU has it; fp32 where bf16 matmuls are emulated and slower)
    peak_precision = max(report["matmul_peak_gflops"], key=report["matmul_peak_gflops"].get)
    roofline_ms = flops["generator_folded"] / report["matmul_peak_gflops"][peak_precision] / 1e6
    report["roofline"] = {
        "folded_gflop": report["gflop_per_image"]["generator_folded"],
        "peak_precision": peak_precision,
        "peak_gflops": report["matmul_peak_gflops"][peak_precision],
        "ms": round(roofline_ms, 3),
        "ms_at_bf16_peak": round(flops["generator_folded"] / report["matmul_peak_gflops"]["bf16"] / 1e6, 1),
    }
    if "pipeline" in timed:
        report["pipeline_over_fastest"] = round(timed["pipeline"]["median_ms"] / timed[fastest]["median_ms"], 3)
        report["roofline"]["pipeline_over_roofline"] = round(timed["pipeline"]["median_ms"] / roofline_ms, 2)
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def print_report(report: dict) -> None:
    p = report["parameters"]
    print(f"preset {report['preset']} ({report['image_size']}x{report['image_size']}, batch 1), "
          f"weights: {report['weights']}")
    print(f"parameters: generator {p['generator'] / 1e6:.2f}M (mask embedder {p['mask_embedder'] / 1e6:.2f}M), "
          f"style encoder {p['style_encoder'] / 1e6:.2f}M, identity projection {p['identity_projection'] / 1e6:.2f}M")
    f = report["gflop_per_image"]
    print(f"GFLOP/image: generator {f['generator_cached_context']:.4g} (+ {f['fold_context']:.2g} to fold a new "
          f"context), folded generator {f['generator_folded']:.4g} (+ {f['fold_blocks']:.2g} and "
          f"{report['fold_blocks_ms']:.0f} ms to fold the blocks), style encoder {f['style_encoder']:.1f}")
    peak = report["matmul_peak_gflops"]
    print(f"matmul peak here (best of {report['matmul_peak_trials']['fp32']['trials']} trials): "
          f"fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    for mode, r in report["generator"].items():
        print(f"generator {mode:>13}: median {r['median_ms']:7.1f} ms (min {r['min_ms']:.1f}, "
              f"CPU {r['cpu_ms']:.0f} ms), "
              f"{r['achieved_gflops']:.0f} GFLOP/s = {r['achieved_over_peak']:.0%} of peak "
              f"({r['achieved_over_peak_cpu']:.0%} per CPU second), "
              f"vs fp32 max {r['max_abs_diff_vs_fp32']:.4f} mean {r['mean_abs_diff_vs_fp32']:.5f} "
              f"PSNR {r['psnr_vs_fp32_db']:.1f} dB")
    for mode, r in report.get("style_encoder", {}).items():
        print(f"style encoder {mode:>9}: median {r['median_ms']:.1f} ms")
    pm = report["pipeline_mode"]
    print(f"pipeline mode: {pm['describe']}" + (f" = {pm['same_as']}" if pm["same_as"] else " (mixed)"))
    r = report["roofline"]
    line = f"folded-FLOP roofline {r['ms']:.0f} ms ({r['folded_gflop']:.4g} GFLOP at the {r['peak_precision']} peak)"
    if "pipeline_over_fastest" in report:
        line += (f"; pipeline / fastest {report['pipeline_over_fastest']:.3f}, "
                 f"pipeline / roofline {r['pipeline_over_roofline']:.2f}")
    print(line)
    m = report["machine"]
    print(f"fastest: {report['fastest_mode']}; threads {m['threads']}, load average "
          f"{m['load_average_before'][0]} -> {m['load_average_after'][0]}")


def run(args) -> int:
    report = run_bench(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0
