"""The two goals and how a recognizer's verdict is read for them.

- impersonate: the face still looks like the source A to people; recognizers read the target B.
  Reached when the recognizer says "same person" for (result, B).
- dodge: recognizers no longer read A. Reached when the recognizer says "different person" for
  (result, A).

`goal_margin` measures how far past its threshold a recognizer's score is, in that recognizer's own
units (cosine similarity or Euclidean distance), signed so that positive means the goal is reached.
It works on floats and on torch tensors (the optimisers' losses are built from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from idface.errors import InputError
from idface.identity.base import score_kind

IMPERSONATE = "impersonate"
DODGE = "dodge"
GOALS = (IMPERSONATE, DODGE)

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


def goal_margin(recognizer, goal: str, score_to_source, score_to_target):
    """Signed distance past the threshold (positive = goal reached), in the recognizer's units."""
    thr = recognizer.threshold
    if goal == IMPERSONATE:
        s = score_to_target
        return s - thr if recognizer.higher_is_more_similar else thr - s
    s = score_to_source
    return thr - s if recognizer.higher_is_more_similar else s - thr


@dataclass
class Reference:
    """One recognizer's embeddings of the source A and (impersonation) the target B."""

    source: np.ndarray  # [D]
    target: np.ndarray | None  # [D]


def read_verdict(recognizer, embedding: np.ndarray, ref: Reference, goal: str, margin: float = 0.0) -> dict:
    """Scores of one embedding against A and B, verdicts, and whether the goal is reached."""
    s_src = float(recognizer.score(embedding, ref.source))
    s_tgt = None if ref.target is None else float(recognizer.score(embedding, ref.target))
    m = float(goal_margin(recognizer, goal, s_src, s_tgt if s_tgt is not None else np.nan))
    kind = score_kind(recognizer.higher_is_more_similar)
    return {
        f"{kind}_to_source": round(s_src, 4),    # kind: "distance" (dlib) or "similarity" (cosine)
        f"{kind}_to_target": None if s_tgt is None else round(s_tgt, 4),
        "same_as_source": bool(recognizer.is_same(s_src)),
        "same_as_target": None if s_tgt is None else bool(recognizer.is_same(s_tgt)),
        "goal_margin": round(m, 4),
        "success": bool(m > 0),
        "success_with_margin": bool(m >= margin),
    }
