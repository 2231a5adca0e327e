"""The step loop that photo mode and token mode share: optimise, every few steps turn the current
state into a real uint8 image, verify it as a user would, keep the best verified state, stop at
the wanted verdict (with the margin), the step limit or the time limit.

What differs between the modes is passed in: `step` (one optimiser step: a log record and
whether it is worth verifying now), `candidate` (the current uint8 image within the budget, or
None when it is over budget) and `verify` (recognizer -> {"raw": verdict, "recompressed": verdict}).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class SearchResult:
    image: np.ndarray                # [H, W, 3] uint8, the best verified state
    verified: dict                   # recognizer -> {"raw": verdict, "recompressed": verdict}
    steps: int
    seconds: float
    stopped: str                     # "goal reached", "goal already reached", "step limit", "time limit"
    history: list = field(default_factory=list)


def rank(verified: dict) -> tuple:
    """Order verified states: more raw goals reached first, then more goals in all, then the worst margin."""
    raw = sum(v["raw"]["success"] for v in verified.values())
    both = sum(v[k]["success"] for v in verified.values() for k in ("raw", "recompressed"))
    worst = min(v[k]["goal_margin"] for v in verified.values() for k in ("raw", "recompressed"))
    return (raw, both, worst)


def done(verified: dict, robust: bool) -> bool:
    """Every recognizer gives the wanted verdict with the margin (and after re-compression when robust)."""
    keys = ("raw", "recompressed") if robust else ("raw",)
    return all(v[k]["success_with_margin"] for v in verified.values() for k in keys)


def search(*, start_image: np.ndarray, start_verified: dict, steps: int, max_seconds: float | None,
           robust: bool, step: Callable[[int], tuple[dict, bool]], candidate: Callable[[], np.ndarray | None],
           verify: Callable[[np.ndarray], dict], progress: Callable[[int, dict], None] | None = None) -> SearchResult:
    """Run `step` up to `steps` times (see the module docstring); the clock starts here."""
    start = time.perf_counter()
    best_image, best_verified, best_rank = start_image, start_verified, rank(start_verified)
    history: list = []
    if done(start_verified, robust):
        return SearchResult(start_image, start_verified, 0, time.perf_counter() - start, "goal already reached", history)

    def check(record: dict) -> bool:
        """Verify the current candidate; True when the goal is reached."""
        nonlocal best_image, best_verified, best_rank
        image = candidate()
        if image is None:
            record["over_budget"] = True
            return False
        verified = verify(image)
        record["verified"] = {k: {kk: vv["goal_margin"] for kk, vv in v.items()} for k, v in verified.items()}
        if rank(verified) > best_rank:
            best_image, best_verified, best_rank = image, verified, rank(verified)
        if done(verified, robust):
            best_image, best_verified = image, verified
            return True
        return False

    stopped, i = "step limit", 0
    for i in range(1, steps + 1):
        record, worth_checking = step(i)
        reached = check(record) if worth_checking or i == steps else False
        history.append(record)
        if progress:
            progress(i, record)
        if reached:
            stopped = "goal reached"
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            stopped = "time limit"
            if "verified" not in record:
                check(record)
            break
    return SearchResult(best_image, best_verified, i, time.perf_counter() - start, stopped, history)
