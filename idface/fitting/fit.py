"""Per-face fitting (pivotal tuning, Roich et al. 2021): make a generator reproduce one face it never
saw, and keep mask editing and the identity token working on it.

    result = fit_face("photo.jpg")                     # base: the resolver's checkpoint
    result.psnr_face_before, result.psnr_face_after    # dB inside the face region
    result.save("fitted/")                             # an ordinary checkpoint folder

1. Prepare the photo as the app does (detect, align to the generator frame, parse, embed with the
   checkpoint's recognizer).
2. Make the copy's mask embedder local around the photo's mask (fitting.locality): an edit then
   changes the embedding only near itself (the embedder is most of the generator's
   non-locality), while the photo's embedding stays.
3. Tune the copy (the embedder and the 16 px stage frozen) around the encoder's style codes, one
   image per step, in turn (FitConfig.schedule):
   - the photo (L1 + SSIM + MSE, face region weighted up; now and then the recognizer identity
     loss, so the fitted face stays the same person);
   - the photo's mask with another person's identity token: the output changes from the photo as
     the base generator's output changes with that token (low-passed), and the recognizer reads
     that person and no longer the photo's (the identity token stays alive: injection still
     works after fitting, for the people practised with);
   - optionally an edited mask (outside the edit the photo, inside the base's drawing) or another
     bundled face (anchor: stays the base output).
4. Optional style-code steps (code_steps) are folded into the style encoder's per-class biases,
   so the fitted checkpoint gives the same codes through the ordinary pipeline (app, CLI, eval).

Only the fitted weights leave this module; the photo, its codes and embeddings are not stored.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from idface import metrics as M
from idface.errors import IdfaceError, InputError
from idface.tensors import gaussian_blur, onehot  # onehot: [S, S] -> [1, K, S, S]
from idface.fitting import losses as L
from idface.fitting.edits import augmented_masks, edited_region, random_blob_edit
from idface.fitting.locality import localise_mask_embedder
from idface.optim import Adam
from idface.threads import thread_local_torch_threads
from idface.labels import CLASS_INDEX, validate_label_map
from idface.model import IdFaceModel

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
OTHER_FACES_DIR = REPO_ROOT / "assets" / "train"        # the bundled faces: anchors, foreign identities
OTHER_FACES = ("astronaut", "grace_hopper", "obama", "obama2", "obama3", "biden")
# "inside the face region" for the PSNR target: the face's own classes (no hair, ears, neck, clothes)
FACE_REGION_CLASSES = tuple(CLASS_INDEX[c] for c in (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"))


class FitCancelled(IdfaceError):
    """The caller cancelled a fit (cancel event set)."""


@dataclass
class FitConfig:
    """How long and with what weights to fit. Defaults: about 15 s on 2 shared CPU cores at 128 px."""

    steps: int = 80                     # generator tuning steps (one image each)
    code_steps: int = 0                 # style-code (pivot) steps, generator frozen
    max_seconds: float | None = 17.0    # wall clock for the fit, once the face is prepared (None: no limit)
    code_lr: float = 0.1
    generator_lr: float = 2e-3          # Adam, cosine-decayed to final_lr_fraction of it
    final_lr_fraction: float = 0.05
    warmup_steps: int = 4
    # reconstruction = L1 + ssim * (1 - SSIM) + mse * MSE. SSIM weighs most: on the two people a
    # held-out base never saw, 70 steps reached 31.2/29.2 dB face PSNR with 8 (26.2/24.5 with 0.5;
    # the SSIM term's gradient stays large where L1/MSE have flattened out)
    ssim: float = 8.0
    mse: float = 1.0
    face_weight: float = 12.0           # pixels of the face region count 1 + face_weight times
    # 1 - cos to the photo's embedding, own token, on every n-th photo step (the recognizer costs a
    # third of a step). 1.5 every 2nd (was 0.2 every 4th): on the two people a held-out base never
    # saw, dlib read the 70-step fit as the photo's person (0.53, 0.49) instead of not (0.68, 0.69),
    # ~1 dB of face PSNR for it; the bundled photos kept their PSNR and gained identity
    identity: float = 1.5
    identity_every: int = 2
    # with another person's token ("foreign" steps) the output should change from the photo as the
    # base generator's output changes when that token replaces the photo's (the token keeps the
    # effect it had: injection still works after fitting), by the reconstruction loss ...
    injection_pixels: float = 1.0
    injection_ssim: float = 0.5         # ... with its own SSIM weight (the photo's 8 drowned the recognizer terms) ...
    injection: float = 0.4              # ... and 1 - cos to that person's embedding (the recognizer) ...
    injection_away: float = 0.5         # ... and a hinge pushing it past the same-person threshold
    injection_margin: float = 0.1       # away from the photo's person, by this margin (training.losses.away_loss)
    injection_smooth: float = 1 / 64    # the base's change, low-passed (Gaussian sigma, of the side: 2 px at 128):
                                        # its thin marks (glasses-like lines round the eyes) are not copied
    min_token_effect: float = 0.5       # injection steps only if swapping the token changes the base
                                        # output by this much (mean |change|, 0..255)
    edit_inside: float = 0.5            # edited masks: outside = photo, inside follows the target
    edit_target: str = "transfer"       # inside an edit: "base" (the base generator's drawing of the
                                        # edited mask) or "transfer" (the photo + the base's change)
    edit_pool: int = 10                 # random edited masks (edits.augmented_masks) per fit
    # what each step renders, in turn: the photo; an edited mask (edits stay local); the photo's
    # mask with another person's token (injection keeps working); another bundled face (anchor)
    schedule: tuple[str, ...] = ("photo", "photo", "foreign")
    anchor: float = 1.0                 # other faces: stay the base generator's output
    exclude_faces: tuple[str, ...] = () # bundled faces (OTHER_FACES) never used here as foreign identities
                                        # or anchors (a benchmark keeps the people whose tokens it injects out)
    edit_margin: float = 1 / 32         # of the side: around an edit, pixels that may blend (4 at 128)
    localise_steps: int = 80            # mask-embedder locality steps (fitting.locality; milliseconds each)
    localise_lr: float = 1e-2
    localise_weight: float = 300.0      # edits change the embedding only near themselves ...
    localise_band: float = 1.0          # ... and its weights from far-off pixels shrink (any edit)
    localise_blobs: int = 24            # generic random local changes (edits.random_blob_edit) besides the pool
    # parameters not tuned (prefixes): the localised mask embedder and the 16 px stage (its
    # self-attention spreads a change over the whole image; tuning it costs a third of each step)
    frozen: tuple[str, ...] = ("generator.mask_embedder.", "generator.res_blocks.0.", "generator.transformer_blocks.0.")
    threads: int | None = 1             # torch threads of the fitting thread only (None: as it is);
                                        # one thread is several times faster on cores shared with others
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.code_steps < 0:
            raise InputError(f"fitting steps must be >= 0; got steps={self.steps}, code_steps={self.code_steps}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError(f"--max-seconds must be positive; got {self.max_seconds}")
        if self.edit_target not in ("base", "transfer"):
            raise InputError(f"edit_target must be 'base' or 'transfer'; got {self.edit_target!r}")
        if set(self.exclude_faces) - set(OTHER_FACES):
            raise InputError(f"exclude_faces: unknown bundled faces {sorted(set(self.exclude_faces) - set(OTHER_FACES))}; "
                             f"known: {', '.join(OTHER_FACES)}")
        unknown = set(self.schedule) - {"photo", "edit", "foreign", "anchor"}
        if unknown or "photo" not in self.schedule:
            raise InputError(f"the schedule needs 'photo' and knows photo, edit, foreign, anchor; got {self.schedule}")


@dataclass
class FitProgress:
    stage: str          # "preparing", "codes", "generator", "checking"
    step: int           # steps done in this stage
    total: int          # steps planned in this stage
    fraction: float     # of the whole fit, 0..1
    elapsed: float      # seconds since the fit started
    eta: float | None   # seconds left (None before the first step is timed)
    loss: float | None = None


@dataclass
class FitResult:
    model: IdFaceModel                  # the fitted copy (eval mode); the base model is untouched
    base: str                           # which checkpoint it was fitted from
    photo_hash: str                     # blake2b of the aligned face + label map (cache key, not the photo)
    image_size: int
    psnr_before: float                  # dB, whole image, base checkpoint, through the pipeline
    psnr_after: float
    psnr_face_before: float             # dB inside the face region (FACE_REGION_CLASSES)
    psnr_face_after: float
    identity_metric: str                # the recognizer whose score follows, and its kind
    identity_before: float              # recognizer score of the reconstruction vs the photo
    identity_after: float
    identity_threshold: float
    code_steps: int
    steps: int
    seconds: float                      # the fit itself (the face already prepared)
    stopped: str                        # "done", or "time limit" when max_seconds cut the steps
    anchors: int                        # other faces used as anchors / foreign identities
    foreign_identities: int             # 0 when the base generator ignores its identity token
    token_effect: float                 # base output's mean |change| (0..255) when the token is swapped
    reconstruction: np.ndarray = field(repr=False, default=None)  # [S, S, 3] uint8, synthetic
    prepare_seconds: float = 0.0        # detect, align, parse, embed (fit_face only; the app did it at upload)
    embedder_locality: dict = field(default_factory=dict)  # fitting.locality's report (relative drifts)
    stage_seconds: dict = field(default_factory=dict)      # setup, codes, targets, generator, check

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (no images, no embeddings)."""
        keys = ("base", "image_size", "psnr_before", "psnr_after", "psnr_face_before", "psnr_face_after",
                "identity_metric", "identity_before", "identity_after", "identity_threshold", "code_steps",
                "steps", "seconds", "prepare_seconds", "stopped", "anchors", "foreign_identities", "token_effect")
        out = {k: getattr(self, k) for k in keys}
        out["stage_seconds"] = {k: round(v, 2) for k, v in self.stage_seconds.items()}
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 4)
        return out

    def save(self, folder: str | Path) -> Path:
        """Write an ordinary checkpoint folder (config.json, model.safetensors, README.md)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        return folder


@dataclass
class _Other:
    """A bundled face: anchor for the locality regulariser and a foreign identity."""

    name: str
    image: np.ndarray             # [S, S, 3] uint8 at the model's resolution
    label: np.ndarray             # [S, S]
    embedding: torch.Tensor | None  # [D] recognizer embedding of the aligned photo
    anchor: tuple | None = None   # (one-hot [1, K, S, S], context [1, T, D], base output [1, 3, S, S]), on first use

    def anchor_tensors(self, model: IdFaceModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Its mask, context (codes + own token) and the base generator's output (computed once:
        only the anchor steps need them)."""
        if self.anchor is None:
            oh = onehot(self.label)
            with torch.no_grad():
                codes, _ = model.encode_style(to_model_tensor(self.image), oh)
                token = model.identity_token(None if self.embedding is None else self.embedding[None], batch=1)
                context = model.context(codes, token)
                self.anchor = (oh, context, model.generator(oh, context))
        return self.anchor


# ---------------------------------------------------------------------------------------------
# small helpers

def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """The pipeline's resize of a style image (PIL bilinear)."""
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_labels(label: np.ndarray, size: int) -> np.ndarray:
    if label.shape[0] == size:
        return label
    return np.asarray(Image.fromarray(label).resize((size, size), Image.NEAREST))


def to_model_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [S, S, 3] -> [1, 3, S, S] in [-1, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float()[None] / 127.5 - 1.0


def psnr_db(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR of uint8 images, over `region` [S, S] bool when given (idface.metrics.psnr)."""
    return float(M.psnr(a, b, region=region))


def frozen_stages(generator, frozen: tuple[str, ...]) -> int:
    """How many leading stages (with the mask embedder before them) have no tuned parameter."""
    def is_frozen(module: str) -> bool:
        return all(f"generator.{module}.{n}".startswith(tuple(frozen))
                   for n, _ in generator.get_submodule(module).named_parameters())

    if not is_frozen("mask_embedder"):
        return 0
    count = 0
    while count < len(generator.res_blocks) and is_frozen(f"res_blocks.{count}") and is_frozen(
            f"transformer_blocks.{count}"):
        count += 1
    return count


def face_region(label: np.ndarray) -> np.ndarray:
    return np.isin(label, FACE_REGION_CLASSES)


def photo_key(*arrays: np.ndarray) -> str:
    """Content hash of a photo or a prepared face (aligned, label map): a cache key, not
    reversible to the photo."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def embed(recognizer, image_uint8: np.ndarray) -> torch.Tensor:
    """Recognizer embedding [D] of a generator-frame image (any size), as the engine computes it."""
    x = torch.from_numpy(np.array(image_uint8, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return recognizer.embed_frame(x)[0].float()


def generate(model: IdFaceModel, aligned: np.ndarray, label_map: np.ndarray, embedding) -> np.ndarray:
    """One reconstruction through the ordinary pipeline (what the app and the CLI show)."""
    from idface.pipeline import IdFacePipeline

    pipe = IdFacePipeline(model, cache_size=2)
    emb = None if embedding is None else np.asarray(embedding, dtype=np.float32)
    return pipe(label_map, style=(aligned, label_map), identity_embedding=emb, attention=False).image


# ---------------------------------------------------------------------------------------------
# the other faces (cached per base model)

_OTHERS: "weakref.WeakKeyDictionary[IdFaceModel, list[_Other]]" = weakref.WeakKeyDictionary()
_OTHERS_LOCK = threading.Lock()


def other_faces(model: IdFaceModel, recognizer) -> list[_Other]:
    """The bundled faces with the base model's codes (empty without the assets)."""
    with _OTHERS_LOCK:
        if model in _OTHERS:
            return _OTHERS[model]
        from idface.images import load_image, load_mask

        size, out = model.config.image_size, []
        for name in OTHER_FACES:
            img_path, mask_path = OTHER_FACES_DIR / f"{name}.png", OTHER_FACES_DIR / f"{name}_mask.png"
            if not (img_path.is_file() and mask_path.is_file()):
                continue
            image, label = load_image(img_path, what=name), load_mask(mask_path)
            emb = embed(recognizer, image) if recognizer is not None else None
            out.append(_Other(name, resize_image(image, size), resize_labels(label, size), emb))
        _OTHERS[model] = out
        return out


# ---------------------------------------------------------------------------------------------
# folding the pivot into the style encoder

def fold_code_offsets(model: IdFaceModel, offsets: torch.Tensor, presence: torch.Tensor) -> None:
    """codes = tanh(pre + bias) per class and scale: adding the pre-tanh offsets [K, code_dim] of
    the present classes to the per-class biases makes the encoder give the pivot codes."""
    enc = model.style_encoder
    dim = model.config.style_dim
    with torch.no_grad():
        for s, bias in enumerate(enc.code_bias):                         # [K, style_dim] each
            bias[presence] += offsets[presence, s * dim:(s + 1) * dim].to(bias.dtype)


def fitted_config(model: IdFaceModel, base: str, summary: dict[str, Any]):
    notes = (
        f"**Fitted to one face** (pivotal tuning, `python -m idface fit`) from the checkpoint {base}: "
        f"{summary['code_steps']} style-code steps and {summary['steps']} generator steps in "
        f"{summary['seconds']:.1f} s; PSNR inside the face region {summary['psnr_face_before']:.1f} -> "
        f"{summary['psnr_face_after']:.1f} dB at {summary['image_size']} px. The photo itself is not "
        "stored here, but these weights were tuned to reproduce that person's face: treat this folder "
        "as biometric data of that person (do not publish it without their consent) and delete it "
        "when it is no longer needed. Images it generates are synthetic."
    )
    extra = dict(model.config.extra)
    extra.update({"notes": notes, "fitted": {"from": base, **summary}})
    return replace(model.config, extra=extra)


# ---------------------------------------------------------------------------------------------
# the fit

def fit_prepared(
    base_model: IdFaceModel,
    aligned: np.ndarray,
    label_map: np.ndarray,
    embedding: np.ndarray | torch.Tensor | None,
    config: FitConfig | None = None,
    *,
    recognizer=None,
    base_label: str = "base checkpoint",
    progress: Callable[[FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
    started: float | None = None,
) -> FitResult:
    """Fit a copy of `base_model` to one prepared face: aligned [S0, S0, 3] uint8 in the generator
    frame, its label map [S0, S0] and its embedding by the checkpoint's recognizer ([D], the
    engine's PreparedFace.embeddings[recognizer]). `recognizer` (the same one, differentiable
    embed_frame) enables the identity and injection terms."""
    cfg = config or FitConfig()
    start = time.perf_counter() if started is None else started
    deadline = None if cfg.max_seconds is None else start + cfg.max_seconds
    aligned = np.asarray(aligned, dtype=np.uint8)
    if aligned.ndim != 3 or aligned.shape[2] != 3:
        raise InputError(f"the face to fit must be RGB [H, W, 3]; got {tuple(aligned.shape)}")
    label_map = validate_label_map(label_map)
    size = base_model.config.image_size
    key = photo_key(aligned, label_map)

    def report(stage: str, step: int, total: int, fraction: float, loss: float | None = None) -> None:
        if cancel is not None and cancel.is_set():
            raise FitCancelled("fitting was cancelled")
        if progress is None:
            return
        elapsed = time.perf_counter() - start
        eta = elapsed / fraction * (1 - fraction) if fraction > 0.05 else None
        if deadline is not None and eta is not None:
            eta = min(eta, max(0.0, deadline - time.perf_counter()) + 1.0)
        progress(FitProgress(stage, step, total, fraction, elapsed, eta, loss))

    with thread_local_torch_threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        base_model.eval()
        emb_t = None if embedding is None else torch.as_tensor(np.asarray(embedding, dtype=np.float32))
        t_setup = time.perf_counter()
        timings: dict[str, float] = {}                               # seconds per part of the fit
        before = generate(base_model, aligned, label_map, emb_t)
        real = resize_image(aligned, size)
        lm = resize_labels(label_map, size)
        region = face_region(lm)
        report("preparing", 0, 1, 0.02)

        photo = to_model_tensor(real)                                # [1, 3, S, S]
        mask = onehot(lm)                                            # [1, K, S, S]
        weight = 1 + cfg.face_weight * torch.from_numpy(region).float()[None, None]
        pixel_weight = weight / weight.mean()                        # [1, 1, S, S], mean 1
        others = [o for o in other_faces(base_model, recognizer) if o.name not in cfg.exclude_faces]
        report("preparing", 1, 1, 0.03)
        target_emb = emb_t[None] if emb_t is not None else None      # [1, D]
        foreign = []
        if recognizer is not None and emb_t is not None:
            for o in others:
                if o.embedding is not None and not recognizer.is_same(float(recognizer.score(
                        o.embedding.numpy(), emb_t.numpy()))):
                    foreign.append(o)

        # ---- 2. pivot: style codes with the generator frozen ----
        with torch.no_grad():
            codes0, presence = base_model.encode_style(photo, mask)   # [1, K, D], [1, K]
            token = base_model.identity_token(target_emb, batch=1)    # [1, 1, D]
        pre0 = torch.atanh(codes0.clamp(-0.999, 0.999))
        offsets = torch.zeros_like(pre0, requires_grad=True)
        generator = copy.deepcopy(base_model.generator).train()
        generator.requires_grad_(False)

        # edited copies of the photo's mask (what a visitor paints) and the mask embedder made
        # local around this mask (an edit changes the embedding only near itself)
        margin = max(1, round(cfg.edit_margin * size))
        edits = []                                                   # (name, one-hot [1, K, S, S], inside [1, 1, S, S])
        if "edit" in cfg.schedule or cfg.localise_steps:
            for name, edited in augmented_masks(lm, rng, cfg.edit_pool):
                inside = torch.from_numpy(edited_region(lm, edited, margin)).float()[None, None]
                edits.append((name, onehot(edited), inside))
        localised = {}
        if cfg.localise_steps:
            blobs = [onehot(random_blob_edit(lm, rng)) for _ in range(cfg.localise_blobs)]
            changed = [e[1] for e in edits] + blobs
            if changed:
                localised = localise_mask_embedder(generator.mask_embedder, mask, torch.cat(changed),
                                                   cfg.localise_steps, cfg.localise_lr, cfg.localise_weight,
                                                   cfg.localise_band)
        if "edit" not in cfg.schedule:
            edits = []
        timings["setup"] = time.perf_counter() - t_setup
        opt = Adam([offsets], lr=cfg.code_lr)

        def pivot_codes() -> torch.Tensor:
            return torch.where(presence[..., None], torch.tanh(pre0 + offsets), codes0)

        code_steps = steps = photo_steps = 0
        t_code = time.perf_counter()
        code_budget = None if deadline is None else (deadline - t_code) * 0.25
        for i in range(cfg.code_steps):
            if code_budget is not None and i and (time.perf_counter() - t_code) / i * (i + 1) > code_budget:
                break
            fake = generator(mask, base_model.context(pivot_codes(), token))
            loss = L.reconstruction_loss(fake, photo, cfg.ssim, cfg.mse, pixel_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            code_steps += 1
            report("codes", i + 1, cfg.code_steps, 0.02 + 0.2 * (i + 1) / max(1, cfg.code_steps), loss.item())

        timings["codes"] = time.perf_counter() - t_code
        # ---- 3. tune the generator around the pivot, one image per step ----
        t_targets = time.perf_counter()
        with torch.no_grad():
            codes = pivot_codes().detach()
            context = base_model.context(codes, token)               # [1, T, D]
            edit_targets = None                                      # [E, 3, S, S] inside targets
            if edits:
                drawn = generator(torch.cat([mask] + [e[1] for e in edits]),
                                  context.expand(len(edits) + 1, -1, -1))   # base generator, pivot codes
                edit_targets = drawn[1:]
                if cfg.edit_target == "transfer":                    # the photo + what the edit changes
                    edit_targets = (photo + drawn[1:] - drawn[:1]).clamp(-1, 1)
            # does the base generator use the identity token at all? (mean |change| 0..255 when
            # the photo's token is swapped for other people's). Training the injection objective
            # into a generator that ignores its token only pulls every face towards the others.
            token_effect = 0.0
            if foreign:
                swapped = torch.cat([base_model.identity_token(o.embedding[None], batch=1) for o in foreign])
                outs = generator(mask.expand(len(foreign) + 1, -1, -1, -1),
                                 torch.cat([context, base_model.context(codes.expand(len(foreign), -1, -1), swapped)]))
                token_effect = float((outs[1:] - outs[:1]).abs().mean()) * 127.5
                change = outs[1:] - outs[:1]                                  # [F, 3, S, S]
                if cfg.injection_smooth:
                    change = gaussian_blur(change, cfg.injection_smooth * size)
                foreign_targets = (photo + change).clamp(-1, 1)              # [F, 3, S, S]
            if token_effect < cfg.min_token_effect:
                foreign = []
        tuned = [p for n, p in generator.named_parameters() if not ("generator." + n).startswith(tuple(cfg.frozen))]
        for p in tuned:
            p.requires_grad_(True)
        opt = Adam(tuned, lr=cfg.generator_lr, betas=(0.9, 0.99))
        # the frozen first stages give the same features for the same mask and context every step:
        # run them once per (mask, context) and the tuned stages from there
        start = frozen_stages(generator, cfg.frozen)
        prefix_cache: dict = {}

        def render(key, mask_1hot: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            """The tuned generator's image [1, 3, S, S] for a mask and context."""
            if start == 0:
                return generator(mask_1hot, ctx)
            if key not in prefix_cache:
                with torch.no_grad():
                    prefix_cache[key] = generator.run_stages(generator.mask_embedder(mask_1hot),
                                                   generator.fold_context(ctx), 0, start)
            return generator.run_stages(prefix_cache[key], generator.fold_context(ctx), start)

        available = {"photo": True, "edit": bool(edits), "anchor": bool(others), "foreign": bool(foreign)}
        kinds = [k for k in cfg.schedule if available.get(k)]
        t_gen = time.perf_counter()
        timings["targets"] = t_gen - t_targets
        check_reserve = 0.6  # seconds kept for the final check
        for i in range(cfg.steps):
            if deadline is not None and i:
                per_step = (time.perf_counter() - t_gen) / i
                if time.perf_counter() + per_step + check_reserve > deadline:
                    break
            # cosine decay over the planned steps or the time left, whichever ends first
            frac = i / max(1, cfg.steps)
            if deadline is not None and i:
                frac = max(frac, (time.perf_counter() - t_gen) / max(1e-3, deadline - check_reserve - t_gen))
            warmup = min(1.0, (i + 1) / max(1, cfg.warmup_steps))
            opt.lr = cfg.generator_lr * warmup * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction)
                                                  * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
            kind = kinds[i % len(kinds)]
            if kind == "photo":
                fake = render("photo", mask, context)                 # [1, 3, S, S]
                loss = L.reconstruction_loss(fake, photo, cfg.ssim, cfg.mse, pixel_weight)
                photo_steps += 1
                if (recognizer is not None and target_emb is not None and cfg.identity
                        and photo_steps % max(1, cfg.identity_every) == 1 % max(1, cfg.identity_every)):
                    loss = loss + cfg.identity * L.identity_loss(recognizer, fake, target_emb)
            elif kind == "edit":
                j = int(rng.integers(len(edits)))
                fake = render(("edit", j), edits[j][1], context)
                loss = L.edit_locality_loss(fake, photo, edit_targets[j:j + 1], edits[j][2], pixel_weight,
                                            cfg.edit_inside, cfg.ssim, cfg.mse)
            elif kind == "anchor":
                other_mask, other_context, other_output = others[int(rng.integers(len(others)))].anchor_tensors(base_model)
                fake = generator(other_mask, other_context)
                loss = cfg.anchor * L.anchor_loss(fake, other_output)
            else:  # "foreign"
                f = int(rng.integers(len(foreign)))
                other = foreign[f]
                with torch.no_grad():
                    foreign_token = base_model.identity_token(other.embedding[None], batch=1)
                fake = render(("foreign", f), mask, base_model.context(codes, foreign_token))
                loss = cfg.injection_pixels * L.reconstruction_loss(fake, foreign_targets[f:f + 1], cfg.injection_ssim,
                                                                    cfg.mse, pixel_weight)
                if cfg.injection or cfg.injection_away:
                    loss = loss + L.injection_loss(recognizer, fake, other.embedding[None], target_emb,
                                                   cfg.injection, cfg.injection_away, cfg.injection_margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            report("generator", i + 1, cfg.steps, 0.22 + 0.73 * (i + 1) / max(1, cfg.steps), loss.item())

        timings["generator"] = time.perf_counter() - t_gen
        t_check = time.perf_counter()
        # ---- 4. the fitted checkpoint ----
        model = copy.deepcopy(base_model)
        model.generator.load_state_dict(generator.state_dict())
        fold_code_offsets(model, offsets.detach()[0], presence[0])
        model.eval()
        report("checking", 0, 1, 0.97)
        after = generate(model, aligned, label_map, emb_t)
        if recognizer is not None and emb_t is not None:
            score_before = float(recognizer.score(embed(recognizer, before).numpy(), emb_t.numpy()))
            score_after = float(recognizer.score(embed(recognizer, after).numpy(), emb_t.numpy()))
            metric = f"{recognizer.name} {'similarity' if recognizer.higher_is_more_similar else 'distance'}"
            threshold = float(recognizer.threshold)
        else:
            score_before = score_after = threshold = float("nan")
            metric = "none"
        seconds = time.perf_counter() - start
        result = FitResult(
            model=model, base=base_label, photo_hash=key, image_size=size,
            psnr_before=psnr_db(before, real), psnr_after=psnr_db(after, real),
            psnr_face_before=psnr_db(before, real, region), psnr_face_after=psnr_db(after, real, region),
            identity_metric=metric, identity_before=score_before, identity_after=score_after,
            identity_threshold=threshold, code_steps=code_steps, steps=steps, seconds=seconds,
            stopped="done" if steps == cfg.steps and code_steps == cfg.code_steps else "time limit",
            anchors=len(others), foreign_identities=len(foreign), token_effect=token_effect,
            reconstruction=after, embedder_locality=localised,
            stage_seconds={**timings, "check": time.perf_counter() - t_check},
        )
        model.config = fitted_config(model, base_label, result.summary())
        model._hub_mixin_config = model.config.to_dict()
        if progress is not None:
            progress(FitProgress("done", 1, 1, 1.0, seconds, 0.0, None))
        return result


def fit_face(
    photo: Any,
    base_checkpoint: str | None = None,
    steps: int | None = None,
    max_seconds: float | None = None,
    *,
    config: FitConfig | None = None,
    progress: Callable[[FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> FitResult:
    """Photo (path, bytes, array) -> FitResult. base_checkpoint: folder or Hub id (None: the
    resolver's default, as the app). steps / max_seconds override the config's (max_seconds 0: no
    time limit)."""
    start = time.perf_counter()
    cfg = config or FitConfig()
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    if max_seconds is not None:
        cfg = replace(cfg, max_seconds=max_seconds or None)
    from idface.faces import prepare_face
    from idface.hub import resolve_checkpoint
    from idface.identity.registry import get_recognizer
    from idface.images import load_image

    source = resolve_checkpoint(base_checkpoint)
    base = IdFaceModel.from_pretrained(str(source.path))
    recognizer = get_recognizer(base.config.identity_recognizer)
    with thread_local_torch_threads(cfg.threads):
        face = prepare_face(load_image(photo, "style photo"))
        embedding = embed(recognizer, np.asarray(face.image, dtype=np.uint8)).numpy()
    prepared = time.perf_counter() - start
    result = fit_prepared(base, face.image, face.label_map, embedding, cfg, recognizer=recognizer,
                          base_label=checkpoint_label(source.describe()), progress=progress, cancel=cancel)
    result.prepare_seconds = prepared
    return result


def checkpoint_label(described: str) -> str:
    """hub.CheckpointSource.describe() without this machine's absolute paths."""
    return described.replace(str(REPO_ROOT) + "/", "")
