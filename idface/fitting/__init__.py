"""Per-face fitting (pivotal tuning): a private copy of the generator tuned to one face it never saw,
with mask edits kept local and the identity token kept alive. See idface.fitting.fit."""

from idface.fitting.fit import (  # noqa: F401
    FitCancelled, FitConfig, FitProgress, FitResult, fit_face, fit_prepared, photo_key,
)
from idface.fitting.delta import FittedFace, WeightDelta  # noqa: F401
