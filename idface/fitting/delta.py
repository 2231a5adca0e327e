"""What a fitted face costs to keep: the tensors fitting changed, as fp16 differences to the base.

    delta = WeightDelta.between(base_model, fitted_model)   # about 2.5 MB for the demo checkpoint
    model = delta.apply(base_model)                         # a new IdFaceModel; the base is untouched

The app keeps these in a visitor's session instead of a whole model per fitted face.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from idface.model import IdFaceModel


@dataclass
class WeightDelta:
    diffs: dict[str, torch.Tensor]      # state-dict name -> (fitted - base) float16
    config: object                      # the fitted ModelConfig (its card notes say what it was fitted to)

    @classmethod
    def between(cls, base: IdFaceModel, fitted: IdFaceModel) -> "WeightDelta":
        own = base.state_dict()
        diffs = {}
        for name, value in fitted.state_dict().items():
            d = value.detach().float() - own[name].detach().float()
            if torch.any(d != 0):
                diffs[name] = d.to(torch.float16)
        return cls(diffs, fitted.config)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.diffs.values())

    def apply(self, base: IdFaceModel) -> IdFaceModel:
        model = copy.deepcopy(base)
        state = model.state_dict()
        with torch.no_grad():
            for name, d in self.diffs.items():
                state[name].add_(d.to(state[name].dtype))
        model.config = self.config
        model._hub_mixin_config = self.config.to_dict()
        return model.eval()


@dataclass(eq=False)
class FittedFace:
    """Weights fitted to one face, kept in that visitor's session only (identity semantics: two
    sessions never share one, even for the same photo). `practised` holds, per identity face
    whose token the fitted copy has practised (idface.fitting.inject), those weights too: the
    most recent MAX_PRACTISED."""

    key: str                            # idface.fitting.photo_key of the prepared face
    delta: WeightDelta
    summary: dict                       # FitResult.summary(): what was fitted, how well
    practised: OrderedDict = field(default_factory=OrderedDict)   # identity key -> (WeightDelta, summary)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one practice at a time

    MAX_PRACTISED = 2

    def add_practised(self, identity_key: str, delta: WeightDelta, summary: dict) -> None:
        self.practised[identity_key] = (delta, summary)
        self.practised.move_to_end(identity_key)
        while len(self.practised) > self.MAX_PRACTISED:
            self.practised.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return self.delta.nbytes + sum(d.nbytes for d, _ in self.practised.values())
