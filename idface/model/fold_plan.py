"""Which transformer blocks run folded (idface.model.folding), decided by timing on this machine.

Folding is exact and saves FLOPs, but fewer FLOPs is not always less time: on one CPU the folded
bfloat16 generator was 1.41x faster, on another 14 % slower. So the choice is per stage, by a short
measurement of both forms of each block, made once per CPU model, thread count, torch version,
model size and precision, and kept in the weights cache (idface.weights.timing_choice).

    IDFACE_FOLD=auto   (default) timed: fold a stage where its folded block is not slower
    IDFACE_FOLD=on     fold every block (where FLOPs are saved inside, as fold_block decides)
    IDFACE_FOLD=off    no block folded: the plain blocks with their cached ContextKV

    plan_folding(generator, precision, config) -> FoldPlan    once per pipeline, at first use
    choose_stages(timings)                     -> (fold?, ...) the rule, alone (tested)
    measure_stages(generator, dtype)           -> [StageTiming] both forms of every block

The measurement times each transformer block on its stage's real width at up to MEASURE_TOKENS
tokens (SELF_ATTENTION_TOKENS with self-attention): a band of rows of a larger stage. The blocks
are token-wise apart from the self-attention, which both forms run the same way, so the
difference between the forms is per token. Both forms run interleaved, best of a few runs each.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from idface.errors import InputError
from idface.model.config import ModelConfig
from idface.model.folding import fold_block, run_folded

FOLD_ENV = "IDFACE_FOLD"
FOLD_SETTINGS = ("auto", "on", "off")
MEASURE_TOKENS = 2048          # tokens per timed block (at most; a stage's full h*w if fewer) ...
SELF_ATTENTION_TOKENS = 1024   # ... and per block with self-attention (its kernel is the same in
                               # both forms and grows with the square of the tokens)
MEASURE_RUNS = (2, 15)         # best of at least 2, at most 15 runs per form ...
CLEAR_RATIO = 1.15             # ... stopping after 2 when one form is this much faster
MEASURE_BUDGET_S = 0.25        # ... or when the stage has taken this long (paper-256: 4.5-8 s
                               # in all on two Zen 3 cores under load 6.5; the demo model 0.1-0.5 s)


def fold_setting(value: str | None = None) -> str:
    """IDFACE_FOLD (or `value`): "auto", "on" or "off"; anything else is one clear InputError."""
    raw = os.environ.get(FOLD_ENV, "auto") if value is None else value
    setting = raw.strip().lower() or "auto"
    if setting not in FOLD_SETTINGS:
        raise InputError(f"{FOLD_ENV}={raw!r} is not one of {', '.join(FOLD_SETTINGS)} "
                         "(auto: fold the generator's blocks where timing says it is faster)")
    return setting


@dataclass(frozen=True)
class StageTiming:
    """Best-of-runs seconds of one transformer block in both forms, on `tokens` tokens."""

    plain_s: float
    folded_s: float
    tokens: int


@dataclass(frozen=True)
class FoldPlan:
    """Per generator stage: run its transformer block folded (True) or plain (False)."""

    stages: tuple[bool, ...]
    precision: str
    decided_by: str                               # "timed", "cached timing", "IDFACE_FOLD=on", ...
    timings: tuple[StageTiming, ...] | None = None

    def describe(self, resolutions: Sequence[int] | None = None) -> str:
        """E.g. "fp32: 16^2 plain, 32^2 folded, ... (timed)"."""
        names = [f"{r}^2" for r in resolutions] if resolutions else [f"stage {i}" for i in range(len(self.stages))]
        parts = ", ".join(f"{n} {'folded' if f else 'plain'}" for n, f in zip(names, self.stages))
        return f"{self.precision}: {parts} ({self.decided_by})"

    def to_json(self) -> dict:
        out: dict = {"precision": self.precision, "folded_stages": list(self.stages), "decided_by": self.decided_by}
        if self.timings is not None:
            # to the nanosecond: the tiny preset's blocks take tens of microseconds, and at 3 decimals two
            # different timings could print equal while choose_stages compared the exact ones
            out["stage_timings_ms"] = [{"plain": round(t.plain_s * 1e3, 6), "folded": round(t.folded_s * 1e3, 6),
                                        "tokens": t.tokens} for t in self.timings]
        return out


def choose_stages(timings: Sequence[StageTiming]) -> tuple[bool, ...]:
    """Fold a stage where its folded block is not slower than its plain block (ties fold: the
    folded form does fewer FLOPs, so a tie on a loaded machine leans its way)."""
    return tuple(t.folded_s <= t.plain_s for t in timings)


def _best_of(fns: Sequence[Callable[[], object]]) -> list[float]:
    """Best wall time of each fn, run interleaved (a, b, a, b, ...), MEASURE_RUNS times, stopping
    early when one is clearly faster or the budget is spent."""
    best = [float("inf")] * len(fns)
    start = time.perf_counter()
    for run in range(MEASURE_RUNS[1]):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
        if run + 1 >= MEASURE_RUNS[0]:
            clear = max(best) >= CLEAR_RATIO * min(best)
            if clear or time.perf_counter() - start > MEASURE_BUDGET_S:
                break
    return best


def measure_stages(generator: torch.nn.Module, dtype: torch.dtype, config: ModelConfig,
                   seed: int = 0) -> list[StageTiming]:
    """Time every transformer block of `generator` (weights in `dtype`) plain and folded with a
    random context, on a random input of its stage's shape (up to MEASURE_TOKENS tokens). The
    generator is only read."""
    g = torch.Generator().manual_seed(seed)
    timings = []
    with torch.inference_mode():
        context = torch.randn(1, config.num_tokens, config.code_dim, generator=g)   # [1, T, code_dim]
        for i, block in enumerate(generator.transformer_blocks):
            side = config.base_resolution * 2**i
            cap = MEASURE_TOKENS if block.self_attn is None else SELF_ATTENTION_TOKENS
            rows = side if side * side <= cap else max(1, cap // side)
            channels = block.proj_out.out_features
            x = torch.randn(1, channels, rows, side, generator=g).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last)                     # [1, C, rows, side]
            kv = block.fold_context(context.to(dtype)).to(dtype)
            folded = fold_block(block, context).to(dtype)
            plain_s, folded_s = _best_of([lambda: block(x, kv), lambda: run_folded(block, x, folded)])
            timings.append(StageTiming(plain_s, folded_s, rows * side))
    return timings


def plan_key(config: ModelConfig, precision: str) -> str:
    """The weights-cache key of a fold plan: this machine + the generator's shape + precision."""
    from idface.weights import timing_choice_key

    shape = {k: v for k, v in config.to_dict().items() if k not in ("name", "extra")}
    digest = hashlib.blake2b(json.dumps(shape, sort_keys=True, default=list).encode(), digest_size=6).hexdigest()
    return timing_choice_key("fold-plan", preset=config.name, size=config.image_size, precision=precision,
                             shape=digest)


def plan_folding(generator: torch.nn.Module, precision: str, config: ModelConfig,
                 dtype: torch.dtype | None = None,
                 measure: Callable[[], Sequence[StageTiming]] | None = None) -> FoldPlan:
    """The fold plan for `generator` (the module that will run, weights in `dtype`) at `precision`:
    IDFACE_FOLD on/off, else the cached timing for this machine and size, else a measurement
    (`measure`, default measure_stages), which is cached."""
    setting = fold_setting()
    stages = len(generator.transformer_blocks)
    if setting != "auto":
        return FoldPlan((setting == "on",) * stages, precision, f"{FOLD_ENV}={setting}")
    from idface.weights import save_timing_choice, timing_choice

    key = plan_key(config, precision)
    stored = timing_choice(key)
    if stored is not None and len(stored.get("timings", ())) == stages:
        timings = tuple(StageTiming(t["plain_s"], t["folded_s"], t["tokens"]) for t in stored["timings"])
        return FoldPlan(choose_stages(timings), precision, "cached timing", timings)
    if measure is None:
        dtype = dtype or next(generator.parameters()).dtype
        timings = tuple(measure_stages(generator, dtype, config))
    else:
        timings = tuple(measure())
    save_timing_choice(key, {"timings": [{"plain_s": t.plain_s, "folded_s": t.folded_s, "tokens": t.tokens}
                                         for t in timings],
                             "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return FoldPlan(choose_stages(timings), precision, "timed", timings)
