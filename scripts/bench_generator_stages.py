"""Where the generator's time goes, stage by stage, plain against folded (idface.model.folding).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_generator_stages.py [--preset paper-256]
        [--precision bf16|fp32] [--runs 7] [--json]

For each stage (resolution): the residual block and the transformer block, median ms of --runs
after two warm-up runs, in the plain form (Generator.forward with the folded cross-attention
context) and the folded form (every block folded with the context). Beside them, the kernels no
folding can remove, measured in the same run: each self-attention layer's fused attention kernel
(F.scaled_dot_product_attention on that stage's [1, heads, h*w, head_dim]), and the bf16 matmul
peak. The sum of the stage medians is close to, not equal to, the whole generator's latency
(`python -m idface bench`), which is the figure of record.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F


from idface.bench import build_model, example_inputs, matmul_peak, median_seconds  # noqa: E402
from idface.model.folding import run_folded  # noqa: E402


def stage_times(generator, mask, step, runs: int) -> list[tuple[float, float]]:
    """[(res block ms, transformer block ms)] per stage, medians over runs (after 2 warm-ups)."""
    per_stage: list[list[tuple[float, float]]] = []
    for r in range(runs + 2):
        x = generator.mask_embedder(mask)
        times = []
        for i, (res, block) in enumerate(zip(generator.res_blocks, generator.transformer_blocks)):
            t0 = time.perf_counter()
            x = res(x)
            t1 = time.perf_counter()
            x = step(i, block, x)
            times.append((t1 - t0, time.perf_counter() - t1))
        if r >= 2:
            per_stage.append(times)
    return [(statistics.median(run[i][0] for run in per_stage) * 1e3,
             statistics.median(run[i][1] for run in per_stage) * 1e3) for i in range(len(per_stage[0]))]


def attention_kernel_ms(heads: int, tokens: int, head_dim: int, dtype: torch.dtype, runs: int) -> float:
    q, k, v = (torch.randn(1, heads, tokens, head_dim, dtype=dtype) for _ in range(3))
    seconds, _ = median_seconds(lambda: F.scaled_dot_product_attention(q, k, v), runs, 2)
    return seconds * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-256")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.checkpoint = None
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    model, _ = build_model(args)
    model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    config = model.config
    mask, image, embedding = example_inputs(config)
    with torch.inference_mode():
        codes, _ = model.encode_style(image.contiguous(memory_format=torch.channels_last), mask)
        context = model.context(codes, model.identity_token(embedding))
        kv = model.generator.fold_context(context)
        folded = model.generator.fold(context)
        generator = copy.deepcopy(model.generator).to(dtype)
        kv = [layer.to(dtype) for layer in kv]
        folded = [block.to(dtype) for block in folded]
        mask = mask.to(dtype)
        plain = stage_times(generator, mask, lambda i, block, x: block(x, kv[i])[0], args.runs)
        fast = stage_times(generator, mask, lambda i, block, x: run_folded(block, x, folded[i])[0], args.runs)
        attention = {}
        for i in range(config.num_stages):
            if config.self_attention[i]:
                side = config.base_resolution * 2**i
                attention[i] = attention_kernel_ms(config.attention_heads[i], side * side,
                                                   config.attention_head_dim[i], dtype, args.runs)
        peak = matmul_peak(dtype)[0]

    stages = []
    for i in range(config.num_stages):
        side = config.base_resolution * 2**i
        stages.append({"resolution": side, "res_block_ms": round(plain[i][0], 1),
                       "transformer_plain_ms": round(plain[i][1], 1),
                       "transformer_folded_ms": round(fast[i][1], 1),
                       "self_attention_kernel_ms": round(attention[i], 1) if i in attention else None})
    report = {"preset": config.name, "precision": args.precision, "runs": args.runs,
              "matmul_peak_gflops": round(peak, 1), "stages": stages,
              "sum_plain_ms": round(sum(a + b for a, b in plain), 1),
              "sum_folded_ms": round(sum(a + b for a, b in fast), 1)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{config.name}, {args.precision}, median of {args.runs}; matmul peak {peak:.0f} GFLOP/s")
    print(f"{'stage':>7} {'res block':>10} {'plain':>8} {'folded':>8} {'attention kernel':>17}")
    for s in stages:
        kernel = f"{s['self_attention_kernel_ms']:.1f}" if s["self_attention_kernel_ms"] is not None else "-"
        print(f"{s['resolution']:>5}^2 {s['res_block_ms']:>10.1f} {s['transformer_plain_ms']:>8.1f} "
              f"{s['transformer_folded_ms']:>8.1f} {kernel:>17}")
    print(f"sum of stages: plain {report['sum_plain_ms']:.0f} ms, folded {report['sum_folded_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
