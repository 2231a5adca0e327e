"""The two goals and how a recognizer's verdict is read for them.

- impersonate: the face still looks like the source A to people; recognizers read the target B
  and no longer read A. Two conditions: "reads_target" (same person for (result, B)) and
  "no_longer_reads_source" (different person for (result, A)).
- dodge: recognizers no longer read A: "no_longer_reads_source", and, when other photos of A are
  given (`also`), "no_longer_reads_also" (different person for each of them).

`condition_margins` measures, per condition, how far past its threshold a recognizer's score is,
in that recognizer's own units (cosine similarity or Euclidean distance), signed so that positive
means the condition holds; `goal_margin` is the smallest of them (the goal holds when every
condition does). Both work on floats and on torch tensors (the optimisers' losses use them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from idface.errors import InputError
from idface.identity.base import score_kind

IMPERSONATE = "impersonate"
DODGE = "dodge"
GOALS = (IMPERSONATE, DODGE)

GOAL_CONDITIONS = {  # condition -> what it means
    "reads_target": "the recognizer reads B (same person as the target photo)",
    "no_longer_reads_source": "the recognizer no longer reads A (different person from your photo)",
    "no_longer_reads_also": "the recognizer no longer reads the other photos of A",
}

# Margin past the threshold asked for by default, per metric (score units).
DEFAULT_MARGIN = {"euclidean": 0.03, "cosine": 0.03}


def wanted_margin(recognizer, margin: float | None = None) -> float:
    """The margin past the threshold asked of a recognizer: `margin`, else DEFAULT_MARGIN for its metric."""
    return DEFAULT_MARGIN[recognizer.metric] if margin is None else float(margin)


def check_goal(goal: str, has_target: bool) -> str:
    goal = (goal or "").strip().lower()
    if goal not in GOALS:
        raise InputError(f"unknown goal {goal!r}; choose impersonate or dodge")
    if goal == IMPERSONATE and not has_target:
        raise InputError("impersonation needs a target photo (the person recognizers should read)")
    return goal


def _smallest(values):
    out = values[0]
    for v in values[1:]:
        out = out.minimum(v) if hasattr(out, "minimum") else min(out, v)  # torch tensors or floats
    return out


def condition_margins(recognizer, goal: str, score_to_source, score_to_target=None, scores_to_also=()) -> dict:
    """Condition name -> signed distance past the threshold (positive = the condition holds)."""
    thr, sign = recognizer.threshold, (1.0 if recognizer.higher_is_more_similar else -1.0)
    not_same = lambda s: sign * (thr - s)  # noqa: E731  positive: a different person
    out = {}
    if goal == IMPERSONATE:
        out["reads_target"] = sign * (score_to_target - thr)
    out["no_longer_reads_source"] = not_same(score_to_source)
    if goal == DODGE and len(scores_to_also):
        out["no_longer_reads_also"] = _smallest([not_same(s) for s in scores_to_also])
    return out


def goal_margin(recognizer, goal: str, score_to_source, score_to_target=None, scores_to_also=()):
    """The smallest condition margin (positive = goal reached), in the recognizer's units."""
    return _smallest(list(condition_margins(recognizer, goal, score_to_source, score_to_target,
                                            scores_to_also).values()))


@dataclass
class Reference:
    """One recognizer's embeddings of the source A, (impersonation) the target B and (dodging,
    optional) other photos of A."""

    source: np.ndarray  # [D]
    target: np.ndarray | None  # [D]
    also: list = field(default_factory=list)  # [D] each


def read_verdict(recognizer, embedding: np.ndarray, ref: Reference, goal: str, margin: float = 0.0) -> dict:
    """Scores of one embedding against A (and B, and the other photos of A), which conditions of
    the goal held by `margin`, and whether the goal is reached (every condition held)."""
    s_src = float(recognizer.score(embedding, ref.source))
    s_tgt = None if ref.target is None else float(recognizer.score(embedding, ref.target))
    s_also = [float(recognizer.score(embedding, e)) for e in ref.also] if goal == DODGE else []
    if goal == IMPERSONATE and s_tgt is None:
        raise InputError("impersonation needs the target's embedding")
    conds = condition_margins(recognizer, goal, s_src, s_tgt, s_also)
    m = float(min(conds.values()))
    kind = score_kind(recognizer.higher_is_more_similar)  # "distance" (dlib) or "similarity" (cosine)
    out = {
        f"{kind}_to_source": round(s_src, 4),
        f"{kind}_to_target": None if s_tgt is None else round(s_tgt, 4),
        "same_as_source": bool(recognizer.is_same(s_src)),
        "same_as_target": None if s_tgt is None else bool(recognizer.is_same(s_tgt)),
    }
    if s_also:
        out[f"{kind}_to_also"] = [round(v, 4) for v in s_also]
        out["same_as_also"] = [bool(recognizer.is_same(v)) for v in s_also]
    out.update({
        # condition -> {"margin": past the threshold (recognizer units, + = holds), "held": by the wanted margin}
        "conditions": {k: {"margin": round(float(v), 4), "held": bool(v >= margin)} for k, v in conds.items()},
        "goal_margin": round(m, 4),
        "wanted_margin": margin,
        "past_threshold": bool(m > 0),       # every condition past its threshold
        "success": bool(m >= margin),        # every condition held by the wanted margin
        "success_with_margin": bool(m >= margin),
    })
    return out


def worse(a: dict | None, b: dict) -> dict:
    """Of two verdict blocks for the same image made two ways (read_verdict), the one with the smaller
    goal margin (a: None for the first)."""
    return b if a is None or b["goal_margin"] < a["goal_margin"] else a


_CONDITION_WORDS = {  # condition -> (held, not held)
    "reads_target": ("reads B", "does not read B"),
    "no_longer_reads_source": ("no longer reads A", "still reads A"),
    "no_longer_reads_also": ("no longer reads the other photos of A", "still reads another photo of A"),
}


def verdict_words(block: dict) -> str:
    """One verdict block in words: which conditions held, and whether the goal is reached."""
    if block.get("error"):
        return f"no verdict ({block['error']})"
    parts = []
    for name, c in block.get("conditions", {}).items():
        held, not_held = _CONDITION_WORDS[name]
        if c["held"]:
            parts.append(held)
        elif c["margin"] > 0:
            parts.append(f"{held} only just (within the wanted margin)")
        else:
            parts.append(not_held)
    return ", ".join(parts) + (": goal reached" if block.get("success") else ": goal not reached")


def plural(n: int, word: str) -> str:
    """'1 step', '3 steps'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
