"""Identity injection into fitted weights for a person the model never trained with: a short
continuation of the fit that practises that person's identity token.

A generator's identity path (IdentityProjection: recognizer embedding -> token) only knows the
people it trained with (the bundled demo: four). For anyone else the projected token is a guess
that face recognition does not read as that person, and optimising the token alone moves the face
away from A but not towards B (measured: 0/6 never-seen pairs, README). So, as fitting does with
the bundled people's tokens, the fitted copy practises the visitor's identity face B: a few steps
that alternate
- the photo with its own token (reconstruction, as the fit: people still see A), and
- the photo's mask with B's token: the recognizer the checkpoint was trained with reads B
  (1 - cos) and no longer A (the trainer's hinge, with a margin), while the image stays near the
  fitted rendering with A's token,
and stop once the recognizer reads B and not A with a margin. The result is the fitted weights
plus what they learnt about B's token (A's own token still gives A); swapping the token keeps
working for the people practised before.

    result = practise_identity(fitted_model, recognizer, aligned, label_map, style_embedding, identity_embedding)
    result.model              # a new fitted copy (the one given is untouched)
    result.reads_as_identity  # the recognizer read B and not A at the last check

B's embedding enters the weights: they are as private as the fitted weights (the visitor's
session only).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from idface.errors import InputError
from idface.identity.base import score_kind
from idface.fitting import losses as L
from idface.fitting.fit import FitConfig, face_region, frozen_stages, resize_image, resize_labels, to_model_tensor
from idface.model import IdFaceModel
from idface.optim import Adam
from idface.tensors import onehot
from idface.threads import thread_local_torch_threads


@dataclass
class InjectConfig:
    """Practising one identity token: a few seconds on one core at 128 px."""

    # on the three bench_fit photos with a held-out base (README): 40 steps at 1e-3 and a stop margin
    # of 0.05 gave 4/6 ordered pairs read as the token's person by dlib itself (the port's stop at
    # 0.55 read 0.576 by dlib), 60 at 2e-3 and 0.08 6/6 in 2-11 s under load
    steps: int = 60                     # tuning steps at most (photo and token steps in turn)
    max_seconds: float | None = 12.0    # wall clock (None: the steps decide)
    lr: float = 2e-3                    # Adam on the fit's tuned parameters (constant)
    pull: float = 1.0                   # token steps: 1 - cos(E(output), E(B))
    away: float = 1.0                   # ... the hinge pushing the score to A past the threshold ...
    margin: float = 0.1                 # ... by this margin (the recognizer's units; dlib: distance)
    keep: float = 3.0                   # ... and the reconstruction loss to the fitted rendering with A's token (3 vs 1: face
                                        # PSNR to it 27.4-29.9 vs 26.1-28.2 dB, still 6/6)
    keep_ssim: float = 0.5              # its SSIM weight
    stop_margin: float = 0.08           # stop when B is read and A is not, each this far past the threshold
    threads: int | None = 1             # torch threads of the tuning thread (None: as it is)
    fit: FitConfig = field(default_factory=FitConfig)   # photo steps, pixel weights, frozen stages: the fit's

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise InputError(f"injection steps must be >= 0; got {self.steps}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"injection max_seconds must be positive; got {self.max_seconds}")


@dataclass
class InjectionResult:
    model: IdFaceModel                  # the fitted copy that has practised B's token (eval mode)
    steps: int                          # tuning steps taken (0: the token already worked)
    seconds: float
    recognizer: str                     # whose scores follow
    higher_is_more_similar: bool
    threshold: float
    score_to_identity_before: float     # B's token through the given weights: output vs B's embedding
    score_to_style_before: float        # ... vs A's embedding
    score_to_identity: float            # after practising, at the last check
    score_to_style: float
    reads_as_identity: bool             # B read and A not, with the stop margin
    history: list = field(default_factory=list, repr=False)   # (step, score to B, score to A)
    probed: dict = field(default_factory=dict)   # every recognizer practised against -> its last scores

    def summary(self) -> dict:
        kind = score_kind(self.higher_is_more_similar)
        return {
            "recognizer": self.recognizer, "steps": self.steps, "seconds": round(self.seconds, 2),
            "threshold": self.threshold,
            f"{kind}_to_identity_before": round(self.score_to_identity_before, 4),
            f"{kind}_to_style_before": round(self.score_to_style_before, 4),
            f"{kind}_to_identity": round(self.score_to_identity, 4),
            f"{kind}_to_style": round(self.score_to_style, 4),
            "reads_as_identity": self.reads_as_identity,
            "recognizers_practised_against": {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv)
                                                  for kk, vv in v.items()} for k, v in self.probed.items()},
        }


def reads_as(recognizer, to_identity: float, to_style: float, margin: float) -> bool:
    """The recognizer reads B and not A, each `margin` past its threshold."""
    thr = float(recognizer.threshold)
    if recognizer.higher_is_more_similar:
        return to_identity >= thr + margin and to_style <= thr - margin
    return to_identity <= thr - margin and to_style >= thr + margin


def practise_identity(
    model: IdFaceModel,
    recognizer,
    aligned: np.ndarray,
    label_map: np.ndarray,
    style_embedding: np.ndarray,
    identity_embedding: np.ndarray,
    config: InjectConfig | None = None,
    also: dict | None = None,
) -> InjectionResult:
    """Tune a copy of `model` (fitted to the style face: aligned [S0, S0, 3] uint8 in the generator
    frame, its label_map [S0, S0], style_embedding [D]) so that the token of identity_embedding [D]
    reads as that person to `recognizer` (the checkpoint's own, differentiable embed_frame) and no
    longer as the style face's, the photo with its own token staying reconstructed. `also`: more
    recognizers to satisfy at once, name -> (recognizer, style embedding, identity embedding)
    (each by its own threshold; the app's bars show every available recognizer)."""
    cfg = config or InjectConfig()
    fit = cfg.fit
    start = time.perf_counter()
    size = model.config.image_size
    lm = resize_labels(np.asarray(label_map, dtype=np.uint8), size)
    e_a = torch.as_tensor(np.asarray(style_embedding, dtype=np.float32)).reshape(1, -1)      # [1, D]
    e_b = torch.as_tensor(np.asarray(identity_embedding, dtype=np.float32)).reshape(1, -1)   # [1, D]
    probes = [(recognizer, e_a, e_b)] + [
        (rec, torch.as_tensor(np.asarray(ea, dtype=np.float32)).reshape(1, -1),
         torch.as_tensor(np.asarray(eb, dtype=np.float32)).reshape(1, -1))
        for name, (rec, ea, eb) in (also or {}).items() if name != recognizer.name]
    scores: dict[str, tuple[float, float]] = {}                                   # name -> (to B, to A)
    model.eval()
    with thread_local_torch_threads(cfg.threads):
        photo = to_model_tensor(resize_image(np.asarray(aligned, dtype=np.uint8), size))    # [1, 3, S, S]
        mask = onehot(lm)                                                          # [1, K, S, S]
        region = torch.from_numpy(face_region(lm)).float()[None, None]             # [1, 1, S, S]
        weight = 1 + fit.face_weight * region
        pixel_weight = weight / weight.mean()
        with torch.no_grad():
            codes, _ = model.encode_style(photo, mask)                             # [1, K, C]
            context_a = model.context(codes, model.identity_token(e_a, batch=1))   # [1, T, C]
            context_b = model.context(codes, model.identity_token(e_b, batch=1))
            keep_target = model.generator(mask, context_a)                         # [1, 3, S, S]
        generator = copy.deepcopy(model.generator).train()
        generator.requires_grad_(False)
        tuned = [p for n, p in generator.named_parameters() if not ("generator." + n).startswith(tuple(fit.frozen))]
        for p in tuned:
            p.requires_grad_(True)
        first = frozen_stages(generator, fit.frozen)
        with torch.no_grad():                                                      # the frozen stages, once
            prefix = {k: generator.run_stages(generator.mask_embedder(mask), generator.fold_context(ctx), 0, first)
                      for k, ctx in (("a", context_a), ("b", context_b))} if first else {}

        def render(which: str) -> torch.Tensor:
            ctx = context_a if which == "a" else context_b
            if not first:
                return generator(mask, ctx)
            return generator.run_stages(prefix[which], generator.fold_context(ctx), first)

        opt = Adam(tuned, lr=cfg.lr, betas=(0.9, 0.99))
        history: list[tuple[int, float, float]] = []
        steps = 0
        to_b = to_a = float("nan")
        token_steps = 0
        for i in range(2 * cfg.steps + 1):
            if i % 2 == 0:                                                         # B's token: check, then tune
                fake = render("b")
                embs = [L.embed_generated(rec, fake) for rec, _, _ in probes]      # [1, D] each
                with torch.no_grad():
                    scores = {rec.name: (float(rec.score(emb, eb)[0]), float(rec.score(emb, ea)[0]))
                              for (rec, ea, eb), emb in zip(probes, embs)}
                to_b, to_a = scores[recognizer.name]
                history.append((steps, to_b, to_a))
                if all(reads_as(rec, *scores[rec.name], cfg.stop_margin) for rec, _, _ in probes) or steps >= cfg.steps:
                    break
                if cfg.max_seconds is not None and token_steps and (
                        time.perf_counter() - start) / token_steps * (token_steps + 1) > cfg.max_seconds:
                    break
                token_steps += 1
                loss = sum(cfg.pull * L.cosine_loss(emb, eb) + cfg.away * L.away_loss(rec, emb, ea, cfg.margin)
                           for (rec, ea, eb), emb in zip(probes, embs))
                loss = (loss + cfg.keep * L.reconstruction_loss(fake, keep_target, cfg.keep_ssim, 0.0, pixel_weight))
            else:                                                                  # the photo, its own token
                fake = render("a")
                loss = L.reconstruction_loss(fake, photo, fit.ssim, fit.mse, pixel_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        out = copy.deepcopy(model)
        out.generator.load_state_dict(generator.state_dict())
        out.eval()
    return InjectionResult(
        model=out, steps=steps, seconds=time.perf_counter() - start, recognizer=recognizer.name,
        higher_is_more_similar=bool(recognizer.higher_is_more_similar), threshold=float(recognizer.threshold),
        score_to_identity_before=history[0][1], score_to_style_before=history[0][2],
        score_to_identity=to_b, score_to_style=to_a,
        reads_as_identity=reads_as(recognizer, to_b, to_a, cfg.stop_margin), history=history,
        probed={rec.name: {f"{rec.score_kind}_to_identity": scores[rec.name][0],
                           f"{rec.score_kind}_to_style": scores[rec.name][1],
                           "reads_as_identity": reads_as(rec, *scores[rec.name], cfg.stop_margin)}
                for rec, _, _ in probes},
    )
