"""Generator modes (need a generator checkpoint): the paper's token swap and test-time optimisation
of the identity token.

Both start from the source face A prepared as the app prepares it (detected, aligned to the
generator frame, parsed): its label map and style codes stay; only the identity side changes.

- swap: one forward pass with the target B's embedding in the identity token (Tarollo et al.'s
  identity injection). The unattacked output is the same pass with A's own embedding.
- token: the identity token [1, 1, C] (and, optionally, the style codes of chosen classes: the
  paper's region swaps) are optimised with Adam so that the recognizers give the wanted verdict,
  through generator -> [0, 1] image -> resize 0.5..1x -> JPEG 60..95 (straight-through) ->
  recognizer.embed_frame (its own alignment, grid_sample). A perceptual budget against the
  unattacked output (PSNR and SSIM hinge penalties, checked on the uint8 image) keeps the face
  looking like A. Every `check_every` steps the uint8 output is verified (raw and re-compressed);
  the run stops at the wanted verdict with the margin.

Scores of generator outputs are read in the generator frame (recognizer.embed_frame), the way the
app's identity bars read them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from idface.conceal.goals import Reference, goal_margin, read_verdict, wanted_margin, worse
from idface.conceal.search import search
from idface.conceal.transforms import jpeg_straight_through, recompressions
from idface.errors import InputError
from idface.metrics import psnr, ssim_luma, ssim_luma_torch
from idface.optim import Adam
from idface.tensors import image_tensor, onehot, to_uint8


@dataclass
class TokenAttackSettings:
    min_psnr: float = 25.0           # dB vs the unattacked output
    min_ssim: float = 0.85
    steps: int = 60
    max_seconds: float | None = 300.0
    lr: float = 0.05
    samples: int = 2
    check_every: int = 3
    margin: float | None = None
    overshoot: float = 0.05
    budget_weight: float = 2.0
    scale_range: tuple[float, float] = (0.5, 1.0)
    jpeg_quality: tuple[int, int] = (60, 95)
    jpeg_probability: float = 0.8
    max_shift: int = 2               # frame pixels
    robust: bool = True
    seed: int = 0


@dataclass
class GeneratorResult:
    image: np.ndarray                # [S, S, 3] uint8 attacked output
    unattacked: np.ndarray           # [S, S, 3] uint8 output with A's own identity
    steps: int
    seconds: float
    stopped: str
    verified: dict = field(default_factory=dict)
    history: list = field(default_factory=list)


def frame_embedding(recognizer, image: np.ndarray) -> np.ndarray:
    """Embedding [D] of a uint8 image in the generator frame (any size)."""
    with torch.inference_mode():
        return recognizer.embed_frame(image_tensor(image))[0].float().cpu().numpy()


def verify_frame(image: np.ndarray, recognizers: list, references: dict[str, Reference], goal: str,
                 margin_of: Callable) -> dict:
    """recognizer -> {"raw": verdict, "recompressed": verdict} for a generator-frame uint8 image."""
    out = {}
    smalls = list(recompressions(image))           # two ways (RECOMPRESS_RESIZERS): the worse verdict counts
    for rec in recognizers:
        read = lambda img: read_verdict(rec, frame_embedding(rec, img), references[rec.name], goal, margin_of(rec))  # noqa: E731
        out[rec.name] = {"raw": read(image), "recompressed": None}
        for small in smalls:
            out[rec.name]["recompressed"] = worse(out[rec.name]["recompressed"], read(small))
    return out


class GeneratorAttack:
    """Swap and token optimisation on an IdFacePipeline for one prepared source face."""

    def __init__(self, pipeline, aligned: np.ndarray, label_map: np.ndarray, source_token_embedding: np.ndarray | None):
        self.pipe = pipeline
        self.aligned = np.asarray(aligned, np.uint8)
        self.label_map = pipeline.prepare_label_map(label_map)            # [S, S] at the model's size
        self.style = pipeline.encode_style(self.aligned, np.asarray(label_map))
        self.source_token_embedding = source_token_embedding

    def generate(self, identity_embedding: np.ndarray | None, codes: np.ndarray | None = None) -> np.ndarray:
        style = self.style if codes is None else codes
        return self.pipe(self.label_map, style=style, identity_embedding=identity_embedding, attention=False).image

    def unattacked(self) -> np.ndarray:
        return self.generate(self.source_token_embedding)

    # ---- test-time optimisation of the identity token ----
    def optimise_token(self, recognizers: list, references: dict[str, Reference], goal: str,
                       classes: tuple[int, ...] = (), settings: TokenAttackSettings | None = None,
                       progress: Callable[[int, dict], None] | None = None) -> GeneratorResult:
        """The model's weights are frozen for the run (their requires_grad flags are restored after),
        so gradients reach only the token and codes and the shared pipeline keeps no .grad."""
        params = list(self.pipe.model.parameters())
        flags = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            return self._optimise_token(recognizers, references, goal, classes, settings, progress)
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)

    def _optimise_token(self, recognizers, references, goal, classes, settings, progress) -> GeneratorResult:
        s = settings or TokenAttackSettings()
        if not recognizers:
            raise InputError("no recognizer to attack")
        rng = np.random.default_rng(s.seed)
        torch.manual_seed(s.seed)
        start = time.perf_counter()
        model = self.pipe.model
        margin_of = lambda rec: wanted_margin(rec, s.margin)  # noqa: E731

        base_image = self.unattacked()
        base_t = image_tensor(base_image)
        with torch.no_grad():
            emb = None if self.source_token_embedding is None else torch.from_numpy(
                np.asarray(self.source_token_embedding, np.float32))[None]
            token0 = model.identity_token(emb, batch=1).float()                   # [1, 1, C]
        token = token0.clone().requires_grad_(True)
        codes0 = self.style.codes.clone()[None]                                  # [1, K, C]
        class_list = sorted(set(int(k) for k in classes))
        code_delta = torch.zeros(1, len(class_list), codes0.shape[-1], requires_grad=True)
        opt_token, opt_codes = Adam([token], lr=s.lr), Adam([code_delta], lr=s.lr)
        mask = onehot(self.label_map)                                         # [1, K, S, S]
        refs_t = {
            rec.name: (torch.from_numpy(np.asarray(references[rec.name].source, np.float32))[None],
                       None if references[rec.name].target is None else
                       torch.from_numpy(np.asarray(references[rec.name].target, np.float32))[None],
                       [torch.from_numpy(np.asarray(a, np.float32))[None] for a in references[rec.name].also])
            for rec in recognizers
        }

        def codes_now() -> torch.Tensor:
            if not class_list:
                return codes0
            codes = codes0.clone()
            codes[:, class_list] = codes0[:, class_list] + code_delta
            return codes

        def render() -> torch.Tensor:
            image = model.generator(mask, model.context(codes_now(), token))    # [1, 3, S, S] in [-1, 1]
            return (image.float() + 1) / 2

        def step(i: int) -> tuple[dict, bool]:
            x = render()                                                         # [1, 3, S, S] in [0, 1]
            losses = []
            worst = math.inf
            samples = []
            for _ in range(s.samples):
                xs = x
                scale = 1.0 if rng.random() < 0.25 else rng.uniform(*s.scale_range)
                if scale < 0.999:
                    n = max(16, int(round(size * scale)))
                    xs = F.interpolate(xs, size=(n, n), mode="bilinear", align_corners=False, antialias=True)
                if rng.random() < s.jpeg_probability:
                    xs = jpeg_straight_through(xs, int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)))
                if s.max_shift:
                    dy, dx = (int(v) for v in rng.integers(-s.max_shift, s.max_shift + 1, size=2))
                    xs = torch.roll(xs, shifts=(dy, dx), dims=(2, 3))
                samples.append(xs)
            for rec in recognizers:
                emb = torch.cat([rec.embed_frame(xs) for xs in samples])          # [N, D]
                src, tgt, also = refs_t[rec.name]
                m = goal_margin(rec, goal, rec.score(emb, src), None if tgt is None else rec.score(emb, tgt),
                                [rec.score(emb, a) for a in also])
                losses.append(F.relu(margin_of(rec) + s.overshoot - m).mean())
                worst = min(worst, float(m.detach().min()))
            psnr_now = psnr(x, base_t, data_range=1.0, min_mse=1e-8 / 255.0**2)[0]  # [1] -> scalar, finite, differentiable
            budget = F.relu(s.min_psnr + 0.5 - psnr_now) / 10 + F.relu(s.min_ssim + 0.01 - ssim_luma_torch(x, base_t)[0]) * 10
            loss = sum(losses) + s.budget_weight * budget
            token.grad = None
            code_delta.grad = None
            loss.backward()
            opt_token.step()
            if class_list:
                opt_codes.step()
            record = {"step": i, "loss": round(float(loss.detach()), 4), "worst_margin": round(worst, 4),
                      "psnr": round(float(psnr_now.detach()), 2)}
            return record, i % s.check_every == 0

        def candidate() -> np.ndarray | None:
            with torch.no_grad():
                image = to_uint8(render())
            within = psnr(base_image, image) >= s.min_psnr and ssim_luma(base_image, image) >= s.min_ssim
            return image if within else None

        size = base_t.shape[-1]
        found = search(
            start_image=base_image,
            start_verified=verify_frame(base_image, recognizers, references, goal, margin_of),
            steps=s.steps, max_seconds=s.max_seconds, robust=s.robust, step=step, candidate=candidate,
            verify=lambda image: verify_frame(image, recognizers, references, goal, margin_of), progress=progress,
        )
        return GeneratorResult(found.image, base_image, found.steps, time.perf_counter() - start, found.stopped,
                               found.verified, found.history)
