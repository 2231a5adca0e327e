"""Identity concealment: make face recognizers read another person (impersonate) or no longer read
the person in the photo (dodge), measurably, and check that it survives re-compression.

    from idface.conceal import conceal
    result = conceal("A.jpg", "B.jpg", goal="impersonate", mode="photo", regions="face")
    result.report["recognizers"]["dlib-resnet"]["same_as_target"]

Modules: goals (goal rules and margins), transforms (real and differentiable JPEG, resizing,
re-compression), regions (parser classes -> pixel masks), score
(photo-level embeddings), photo (photo-mode attack), generator_modes (token swap and test-time
token optimisation), api (`conceal`, the report), cli (`python -m idface conceal`), ui (the app panel).
"""

from idface.conceal.api import GENERATOR_MODES, MODES, ConcealResult, conceal, mode_settings, select_recognizers  # noqa: F401
from idface.conceal.generator_modes import TokenAttackSettings  # noqa: F401
from idface.conceal.photo import PhotoAttackSettings  # noqa: F401
from idface.conceal.goals import DODGE, GOALS, IMPERSONATE  # noqa: F401
