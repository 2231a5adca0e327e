"""`python -m idface train --config CFG` (one device) and
`accelerate launch [--multi_gpu --num_processes N ...] -m idface train --config CFG` (many).

One step = one Adam update of the generator side (style encoder, identity projection, generator)
and one of the discriminator, over batch_size x grad_accum x processes images:

    G pass   token = E_id(real), or for a share injection_fraction of the batch the embedding e_B
             of another person (idface.training.injection: pool of views, slerps, extra photos)
             fake, attention = G(mask, style=real, identity=token)
             L_G = w_adv * hinge_g(D(fake)) + w_fm * FM(D(real), D(fake)) + w_vgg * VGG(fake, real)
                 + w_attn * BCE(attention logits, mask) [+ w_l1 * |fake - real|]   (all vs real A)
                 + own token:     w_id  * (1 - cos(E_id(fake), E_id(real)))
                 + foreign token: w_inj * (1 - cos(E_id(fake), e_B))
                                  + w_away * hinge(E_id(fake) past the threshold away from E_id(real))
    D pass   L_D = hinge(D(real), D(fake.detach()))      (one forward on [fake; real])

TTUR Adam (G 1e-4, D 4e-4, betas (0, 0.9)), learning rates constant then decaying linearly to 0
over the last decay_epochs, EMA of the generator side (what is evaluated and published).
A weighted term whose network is unavailable here (VGG19 without its file, a recognizer without
weights) stops the run before it starts (idface.training.preflight) unless missing losses are
allowed; then it is switched off with a logged message, never faked, and trainer_state.json and
the model card list it.

The run folder (runs/<name>/ unless output_dir) holds tb/ (TensorBoard: every loss, learning
rates, sample grids mask | style | identity | output | reconstruction, eval metrics),
samples/*.png, checkpoints/step_*/ (see idface.training.checkpoint) and final/ (the EMA model
in the Hub format the app loads).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from idface.errors import IdfaceError, InputError, UnavailableError
from idface.labels import PALETTE
from idface.model.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from idface.training import checkpoint as ckpt
from idface.training import losses as L
from idface.training.config import REPO_ROOT, TrainConfig, load_config
from idface.tensors import onehot
from idface.training.data import AugmentConfig, ResumableBatchSampler, collate, dataset_from_config
from idface.training.injection import (
    UNKNOWN_IDENTITY_BASE, PoolConfig, build_identity_pool, identity_keys, sample_tokens,
)

log = logging.getLogger("idface.train")


# ---------------------------------------------------------------------------------------------
# building blocks

def build_model(cfg: TrainConfig):
    from idface.model.config import get_config
    from idface.model.idface_model import IdFaceModel

    spec = dict(cfg.model)
    preset = spec.pop("preset", "paper-256")
    for key, value in list(spec.items()):
        if isinstance(value, list):
            spec[key] = tuple(value)
    return IdFaceModel(get_config(preset, **spec))


def build_discriminator(cfg: TrainConfig, num_classes: int) -> MultiScaleDiscriminator:
    spec = dict(cfg.discriminator)
    preset = spec.pop("preset", "paper-256")
    try:
        dcfg = DiscriminatorConfig.preset(preset).with_overrides(num_classes=num_classes, **spec)
    except (KeyError, TypeError) as err:
        raise InputError(f"training config: discriminator {cfg.discriminator}: {err}") from None
    return MultiScaleDiscriminator(dcfg)


def init_weights(model, folder: str) -> None:
    """Copy a model folder's weights (model.safetensors) into `model`. Tensors the folder lacks
    keep their initialisation (logged: e.g. the identity path added to an older model); a tensor
    the model lacks or of another shape is an error."""
    from safetensors.torch import load_file

    path = Path(folder)
    path = path if path.is_absolute() else REPO_ROOT / path
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"init_from {folder}: no model.safetensors there")
    state = load_file(str(weights))
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if extra or misshaped:
        raise InputError(f"init_from {folder} does not fit this model: unexpected {extra[:5]}, mis-shaped {misshaped[:5]}")
    missing = sorted(set(own) - set(state))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    log.info("initialised from %s%s", folder, f"; new tensors keep their init: {', '.join(missing)}" if missing else "")


def load_recognizer(name: str, device):
    """A frozen recognizer from the identity registry, or UnavailableError with the reason."""
    from idface.identity.registry import get_recognizer

    return get_recognizer(name, device)  # frozen: eval mode, no parameter gradients


def lr_factor(step: int, total: int, decay: int) -> float:
    """1 until the last `decay` steps, then linear to 0 (the factor of step `step`, 0-based)."""
    if decay <= 0 or step < total - decay:
        return 1.0
    return max(0.0, (total - step) / decay)


def color_mask(label: torch.Tensor) -> torch.Tensor:
    """[B, H, W] int64 -> [B, 3, H, W] in [0, 1] (official palette)."""
    pal = torch.as_tensor(PALETTE, dtype=torch.float32, device=label.device) / 255.0
    return pal[label].permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = "auto", progress: bool = True, accelerator=None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg = cfg
        self.progress = progress
        # Several processes on a machine without GPUs (`accelerate launch --multi_gpu
        # --num_processes N` or torchrun there): accelerate needs cpu=True to pick gloo.
        multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.accelerator = accelerator or Accelerator(
            cpu=multi_cpu,
            mixed_precision=cfg.mixed_precision,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        acc = self.accelerator
        self.device = acc.device
        self.run_dir = cfg.run_dir()
        self.disabled: dict[str, str] = {}

        torch.manual_seed(cfg.seed)  # same initial weights on every process
        model = build_model(cfg)
        if cfg.init_from:
            init_weights(model, cfg.init_from)
        self.model_config = model.config
        disc = build_discriminator(cfg, model.config.num_classes)
        self.ema = copy.deepcopy(model).eval().requires_grad_(False).to(self.device)

        # data
        size = model.config.image_size
        aug = AugmentConfig.from_dict(cfg.augment)
        self.train_set = dataset_from_config(cfg.data, size, "train", aug, REPO_ROOT)
        try:
            self.test_set = dataset_from_config(cfg.data, size, "test", None, REPO_ROOT)
        except InputError:
            self.test_set = dataset_from_config(cfg.data, size, "train", None, REPO_ROOT)
            self.disabled["test_split"] = "no test split in the data: periodic eval uses training images"
        self.sampler_args = dict(num_items=len(self.train_set), batch_size=cfg.batch_size, seed=cfg.seed,
                                 rank=acc.process_index, world_size=acc.num_processes)
        bpe = ResumableBatchSampler(**self.sampler_args).batches_per_epoch()
        self.batches_per_epoch = bpe
        steps_per_epoch = max(1, bpe // cfg.grad_accum)
        if cfg.max_steps:
            self.total_steps = int(cfg.max_steps)
            self.decay_steps = int(cfg.decay_steps or 0)
        else:
            self.total_steps = max(1, int(round(cfg.epochs * steps_per_epoch)))
            self.decay_steps = int(round(cfg.decay_epochs * steps_per_epoch))

        # frozen helpers: recognizer (identity token input + identity loss), VGG19
        w = cfg.loss_weights
        self.recognizer = None
        rec_name = cfg.identity_recognizer or model.config.identity_recognizer
        if rec_name == "none":
            rec_name = None
        if rec_name:
            try:
                self.recognizer = load_recognizer(rec_name, self.device)
            except (UnavailableError, IdfaceError) as err:
                raise UnavailableError(
                    f"recognizer {rec_name!r} is needed for the identity token but is unavailable: {err} "
                    "(choose another with identity_recognizer, e.g. \"dlib-resnet\", which works offline)"
                ) from None
            dim = getattr(self.recognizer, "embedding_dim", model.config.identity_dim)
            if dim != model.config.identity_dim:
                raise InputError(f"recognizer {rec_name!r} gives {dim}-d embeddings but the model's identity_dim is {model.config.identity_dim}")
        elif w.identity:
            self.disabled["identity"] = "no identity recognizer configured"
        self.pool = None
        self.pool_cfg = PoolConfig.from_dict(cfg.identity_pool)
        if self.recognizer is not None and cfg.injection_fraction > 0:
            self.pool = build_identity_pool(self.train_set, self.recognizer, self.pool_cfg, seed=cfg.seed, base=REPO_ROOT)
            if acc.is_main_process:
                log.info("identity pool: %d embeddings (held out: %s)", len(self.pool), ", ".join(self.pool_cfg.holdout) or "none")
        elif cfg.injection_fraction > 0:
            self.disabled["injection"] = "no identity recognizer configured"
        self.vgg = None
        if w.perceptual:
            try:
                self.vgg = L.load_vgg19(self.device)
            except UnavailableError as err:
                self.disabled["perceptual"] = str(err)
        for term, reason in self.disabled.items():
            if acc.is_main_process:
                log.warning("%s: %s", term, reason)

        # the identity path (token projection, FiLM layers) may learn faster than the rest
        ident = [p for n, p in model.named_parameters() if n.startswith("identity_projection") or ".identity_film." in n]
        ident_ids = {id(p) for p in ident}
        rest = [p for p in model.parameters() if id(p) not in ident_ids]
        groups = [{"params": rest, "lr_scale": 1.0}]
        if ident:
            groups.append({"params": ident, "lr_scale": cfg.lr_identity_scale})
        opt_g = torch.optim.Adam([{**g, "lr": cfg.lr_g * g["lr_scale"]} for g in groups], betas=cfg.betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.G, self.D, self.opt_g, self.opt_d = acc.prepare(model, disc, opt_g, opt_d)
        self.step = 0
        self.metrics: dict = {}
        self.writer = None

        if resume and resume != "none":
            path = self._find_resume(resume)
            if path is not None:
                self.load_checkpoint(path)

    # ---- plain modules (outside DDP) ----
    @property
    def G_plain(self):
        return self.accelerator.unwrap_model(self.G)

    @property
    def D_plain(self):
        return self.accelerator.unwrap_model(self.D)

    # ---- data ----
    def micro_batches(self):
        """Endless iterator of micro-batches starting where step `self.step` begins."""
        consumed = self.step * self.cfg.grad_accum
        epoch, start = divmod(consumed, self.batches_per_epoch)
        sampler = ResumableBatchSampler(**self.sampler_args, epoch=epoch, start_batch=start, endless=True)
        loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=self.cfg.num_workers,
                                             persistent_workers=self.cfg.num_workers > 0)
        yield from loader

    @torch.no_grad()
    def embed(self, image: torch.Tensor) -> torch.Tensor | None:
        """E_id of images [B, 3, H, W] in [-1, 1] (frozen recognizer), or None without one."""
        if self.recognizer is None:
            return None
        return self.recognizer.embed_frame(((image.float() + 1) / 2).clamp(0, 1)).float()

    # ---- losses ----
    def generator_losses(self, real, label, keys=None):
        """keys [B]: person keys (injection.identity_keys); None: every sample its own person."""
        cfg, w = self.cfg, self.cfg.loss_weights
        mask = onehot(label, self.model_config.num_classes)
        emb = self.embed(real)                                            # E_id(A) [B, D]
        present = None
        if emb is not None and cfg.identity_dropout > 0:
            present = torch.rand(real.shape[0], device=real.device) >= cfg.identity_dropout
        token, foreign = emb, None
        if emb is not None and self.pool is not None:
            if keys is None:
                keys = UNKNOWN_IDENTITY_BASE + torch.arange(real.shape[0])
            token, foreign = sample_tokens(self.pool, emb, keys, cfg.injection_fraction, self.pool_cfg.interpolate)
            if present is not None:
                foreign = foreign & present
        fake, attention = self.G(mask, real, identity_embedding=token, identity_present=present, return_attention=True)
        disc = self.D_plain
        disc.requires_grad_(False)
        fake_out = disc(mask, fake)
        terms = {"g_adv": L.hinge_g_loss(fake_out)}
        if w.feature_matching:
            with torch.no_grad():
                real_out = disc(mask, real)
            terms["g_fm"] = L.feature_matching_loss(real_out, fake_out)
        disc.requires_grad_(True)
        if self.vgg is not None:
            terms["g_vgg"] = L.vgg_perceptual_loss(self.vgg, fake, real)
        if w.attention:
            terms["g_attn"] = L.attention_loss(attention, mask)
        if emb is not None and (w.identity or (foreign is not None and bool(foreign.any()))):
            own = torch.ones_like(emb[:, 0], dtype=torch.bool) if present is None else present.clone()
            if foreign is not None:
                own &= ~foreign
            fake_emb = L.embed_generated(self.recognizer, fake)                # E_id(fake) [B, D]
            if w.identity and bool(own.any()):
                terms["g_id"] = L.cosine_loss(fake_emb[own], emb[own])
            if foreign is not None and bool(foreign.any()):
                terms["g_inj"] = L.cosine_loss(fake_emb[foreign], token[foreign])
                terms["g_away"] = L.away_loss(self.recognizer, fake_emb[foreign], emb[foreign], cfg.injection_margin)
        if w.l1:
            terms["g_l1"] = L.l1_loss(fake, real)
        weight_of = {"g_adv": w.adversarial, "g_fm": w.feature_matching, "g_vgg": w.perceptual,
                     "g_attn": w.attention, "g_id": w.identity, "g_l1": w.l1,
                     "g_inj": w.injection, "g_away": w.injection_away}
        total = sum(weight_of[k] * v for k, v in terms.items())
        terms["g_total"] = total
        return terms, fake

    def discriminator_losses(self, real, label, fake):
        mask = onehot(label, self.model_config.num_classes)
        both = self.D(torch.cat([mask, mask]), torch.cat([fake, real]))
        n = real.shape[0]
        fake_out = [[t[:n] for t in scale] for scale in both]
        real_out = [[t[n:] for t in scale] for scale in both]
        d_real = torch.stack([torch.relu(1 - s[-1].float()).mean() for s in real_out]).mean()
        d_fake = torch.stack([torch.relu(1 + s[-1].float()).mean() for s in fake_out]).mean()
        total = L.hinge_d_loss(real_out, fake_out)
        return {"d_real": d_real, "d_fake": d_fake, "d_total": total}

    # ---- one step ----
    def train_step(self, micro_batches: list[dict]) -> dict[str, float]:
        acc = self.accelerator
        factor = lr_factor(self.step, self.total_steps, self.decay_steps)
        for group in self.opt_g.param_groups:
            group["lr"] = self.cfg.lr_g * factor * group.get("lr_scale", 1.0)
        for group in self.opt_d.param_groups:
            group["lr"] = self.cfg.lr_d * factor
        self.G.train()
        self.D.train()
        sums: dict[str, float] = defaultdict(float)
        n = len(micro_batches)
        for k, batch in enumerate(micro_batches):
            real = batch["image"].to(self.device)
            label = batch["label"].to(self.device)
            keys = identity_keys(batch["identity"], batch["index"])
            last = k == n - 1
            with contextlib.ExitStack() as stack:
                if not last:
                    stack.enter_context(acc.no_sync(self.G))
                    stack.enter_context(acc.no_sync(self.D))
                with acc.autocast():
                    g_terms, fake = self.generator_losses(real, label, keys)
                acc.backward(g_terms["g_total"] / n)
                with acc.autocast():
                    d_terms = self.discriminator_losses(real, label, fake.detach())
                acc.backward(d_terms["d_total"] / n)
            for key, value in {**g_terms, **d_terms}.items():
                v = float(value.detach())
                if not math.isfinite(v):
                    raise FloatingPointError(f"loss {key} is {v} at step {self.step}")
                sums[key] += v / n
        self.opt_g.step()
        self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        self.update_ema()
        self.step += 1
        sums["lr_g"] = self.cfg.lr_g * factor
        sums["lr_d"] = self.cfg.lr_d * factor
        return dict(sums)

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self.cfg.ema_decay
        if self.cfg.ema_warmup:
            decay = min(decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.G_plain.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1 - decay)
        for e, b in zip(self.ema.buffers(), self.G_plain.buffers()):
            e.copy_(b)

    # ---- checkpoints ----
    def _find_resume(self, resume: str) -> Path | None:
        if resume in ("auto", "latest"):
            found = ckpt.list_checkpoints(self.run_dir)
            if not found:
                if resume == "latest":
                    raise InputError(f"--resume latest: no checkpoint in {self.run_dir / 'checkpoints'}")
                return None
            return found[-1]
        path = Path(resume)
        if not (path / "trainer_state.json").is_file():
            raise InputError(f"--resume {resume}: not a training checkpoint folder (no trainer_state.json)")
        return path

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        final = ckpt.checkpoint_dir(self.run_dir, self.step)
        tmp = final.with_name(f".tmp_{final.name}")
        if acc.is_main_process:
            if tmp.exists():
                import shutil
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        ckpt.save_state_dict(ckpt.rng_state(), tmp / f"rng_{acc.process_index}.safetensors")
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.save_state_dict(self.G_plain.state_dict(), tmp / "model.safetensors")
            ckpt.save_state_dict(self.D_plain.state_dict(), tmp / "discriminator.safetensors")
            for name, opt in (("optimizer_g", self.opt_g), ("optimizer_d", self.opt_d)):
                tensors, meta = ckpt.optimizer_to_tensors(opt.state_dict())
                ckpt.save_state_dict(tensors, tmp / f"{name}.safetensors", meta)
            self.save_ema(tmp / "ema")
            state = {
                "step": self.step, "total_steps": self.total_steps, "decay_steps": self.decay_steps,
                "processes": acc.num_processes, "config": self.cfg.to_dict(),
                "model_config": self.model_config.to_dict(), "disabled_terms": self.disabled,
                "metrics": self.metrics,
                "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
            }
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, default=str))
            ckpt.finalize(tmp, final)
            ckpt.prune(self.run_dir, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        acc = self.accelerator
        state = json.loads((path / "trainer_state.json").read_text())
        if state.get("model_config") != json.loads(json.dumps(self.model_config.to_dict())):
            raise InputError(f"checkpoint {path} was made with another model config; start a new run (output_dir) or use --resume none")
        self.G_plain.load_state_dict(ckpt.load_file(str(path / "model.safetensors"), device=str(self.device)))
        self.D_plain.load_state_dict(ckpt.load_file(str(path / "discriminator.safetensors"), device=str(self.device)))
        self.opt_g.load_state_dict(ckpt.optimizer_from_file(path / "optimizer_g.safetensors"))
        self.opt_d.load_state_dict(ckpt.optimizer_from_file(path / "optimizer_d.safetensors"))
        self.ema.load_state_dict(ckpt.load_file(str(path / "ema" / "model.safetensors"), device=str(self.device)))
        if acc.scaler is not None and state.get("scaler"):
            acc.scaler.load_state_dict(state["scaler"])
        rng_file = path / f"rng_{acc.process_index}.safetensors"
        if rng_file.is_file():
            ckpt.set_rng_state(ckpt.load_file(str(rng_file)))
        else:
            log.warning("%s missing (a different number of processes?): RNG reseeded; the run continues but not bit-exactly", rng_file.name)
            torch.manual_seed(self.cfg.seed + 7919 * (state["step"] + acc.process_index))
        self.step = int(state["step"])
        self.metrics = state.get("metrics", {})
        if acc.is_main_process:
            log.info("resumed from %s at step %d", path, self.step)

    def model_card_notes(self) -> str:
        cfg = self.cfg
        data = cfg.data.get("root") or cfg.data.get("images") or f"{len(self.train_set)} image/label pairs"
        lines = [
            "## Training",
            "",
            f"- data: {data} ({len(self.train_set)} training images, {self.model_config.image_size}x{self.model_config.image_size})",
            f"- run: {cfg.name}, {self.step} of {self.total_steps} steps, batch {cfg.batch_size} x {cfg.grad_accum} accumulation x {self.accelerator.num_processes} processes",
            f"- losses (weights): " + ", ".join(f"{k} {v}" for k, v in cfg.loss_weights.to_dict().items()),
            f"- identity recognizer: {cfg.identity_recognizer or self.model_config.identity_recognizer}",
            f"- optimiser: Adam G {cfg.lr_g} / D {cfg.lr_d}, betas {tuple(cfg.betas)}, EMA {cfg.ema_decay}; weights stored as {cfg.export_dtype}",
        ]
        if self.disabled:
            lines.append("- switched off: " + "; ".join(f"{k} ({v})" for k, v in self.disabled.items()))
        if self.metrics:
            lines += ["", "## Metrics (EMA model, periodic eval)", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in self.metrics.items()]
        lines += ["", ckpt.CARD_CONFIG_HEADING, "", "```json", json.dumps(cfg.to_dict(), indent=1, default=str), "```"]
        return "\n".join(lines)

    def save_ema(self, folder: Path, export: bool = False) -> None:
        """The EMA model as a Hub checkpoint; `export` applies the config's export_dtype (the
        checkpoints inside a run stay float32 so that resuming is exact)."""
        model = self.export_model() if export else self.ema
        model.save_pretrained(folder, model_card_kwargs={"notes": self.model_card_notes()})

    def export_model(self):
        if self.cfg.export_dtype == "float32":
            return self.ema
        return copy.deepcopy(self.ema).to(dtype=getattr(torch, self.cfg.export_dtype))

    # ---- samples and eval (main process) ----
    def fixed_batch(self, n: int = 4) -> dict:
        items = [self.test_set[i] for i in range(min(n, len(self.test_set)))]
        return collate(items)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Rows: mask | style | identity source | output (style of the row, identity of the next
        row) | reconstruction (own identity). [3, H', W'] in [0, 1]."""
        from torchvision.utils import make_grid

        batch = self.fixed_batch()
        real = batch["image"].to(self.device)
        label = batch["label"].to(self.device)
        mask = onehot(label, self.model_config.num_classes)
        emb = self.embed(real)
        perm = torch.roll(torch.arange(real.shape[0]), -1)
        injected = self.ema(mask, real, identity_embedding=None if emb is None else emb[perm])
        recon = self.ema(mask, real, identity_embedding=emb)
        cols = [color_mask(label), (real + 1) / 2, (real[perm] + 1) / 2, (injected.float() + 1) / 2, (recon.float() + 1) / 2]
        tiles = torch.stack(cols, 1).flatten(0, 1).clamp(0, 1).cpu()
        return make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)

    def periodic_eval(self) -> dict:
        from idface.training.validate import reconstruction_metrics

        recs = {}
        if self.recognizer is not None:
            recs[getattr(self.recognizer, "name", "recognizer")] = self.recognizer
        return reconstruction_metrics(self.ema, self.test_set, self.device, recognizers=recs,
                                      limit=self.cfg.eval_images, batch_size=max(1, self.cfg.batch_size))

    # ---- the loop ----
    def train(self, stop_at_step: int | None = None) -> dict:
        from tqdm.auto import tqdm

        acc = self.accelerator
        cfg = self.cfg
        end = self.total_steps if stop_at_step is None else min(self.total_steps, stop_at_step)
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {cfg.name}", unit="step",
                   disable=not (self.progress and acc.is_main_process), dynamic_ncols=True)
        batches = self.micro_batches()
        last_logs: dict[str, float] = {}
        t0 = time.perf_counter()
        steps_timed = 0
        while self.step < end:
            logs = self.train_step([next(batches) for _ in range(cfg.grad_accum)])
            steps_timed += 1
            last_logs = logs
            step = self.step
            if step % cfg.log_every == 0 or step == end:
                keys = sorted(logs)
                reduced = acc.reduce(torch.tensor([logs[k] for k in keys], device=self.device), reduction="mean")
                logs = dict(zip(keys, reduced.tolist()))
                last_logs = logs
                if acc.is_main_process:
                    for k, v in logs.items():
                        group = "lr" if k.startswith("lr") else "loss"
                        self.writer.add_scalar(f"{group}/{k}", v, step)
                    self.writer.add_scalar("time/sec_per_step", (time.perf_counter() - t0) / steps_timed, step)
                bar.set_postfix({k: f"{logs[k]:.3g}" for k in ("g_total", "d_total") if k in logs})
            if acc.is_main_process and cfg.sample_every and (step % cfg.sample_every == 0 or step == self.total_steps):
                grid = self.sample_grid()
                self.writer.add_image("samples/mask|style|identity|output|reconstruction", grid, step)
                (self.run_dir / "samples").mkdir(exist_ok=True)
                from torchvision.utils import save_image

                save_image(grid, self.run_dir / "samples" / f"step_{step:08d}.png")
            if acc.is_main_process and cfg.eval_every and (step % cfg.eval_every == 0 or step == self.total_steps):
                self.metrics = {k: v for k, v in self.periodic_eval().items() if isinstance(v, (int, float))}
                for k, v in self.metrics.items():
                    self.writer.add_scalar(f"eval/{k}", v, step)
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == end:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        sec_per_step = (time.perf_counter() - t0) / max(1, steps_timed)
        if acc.is_main_process and self.step >= self.total_steps:
            self.save_ema(self.run_dir / "final", export=True)
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        return {"step": self.step, "total_steps": self.total_steps, "losses": last_logs,
                "sec_per_step": sec_per_step, "disabled_terms": self.disabled, "metrics": self.metrics}


# ---------------------------------------------------------------------------------------------
# Hub

def push_to_hub(trainer: Trainer, repo: str, private: bool = False) -> str:
    """Publish the EMA model (config.json + model.safetensors + model card) to a Hub repo."""
    folder = trainer.run_dir / "final"
    trainer.save_ema(folder, export=True)
    try:
        url = trainer.export_model().push_to_hub(repo, private=private, commit_message=f"idface {trainer.cfg.name}: step {trainer.step}",
                                      model_card_kwargs={"notes": trainer.model_card_notes()})
    except Exception as err:  # offline, no token, no rights: say so in one line
        raise UnavailableError(f"could not push to the Hub repo {repo}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
                               f"The model is saved in {folder}; push it later with `huggingface-cli upload {repo} {folder}`") from None
    return str(url)


# ---------------------------------------------------------------------------------------------
# CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config JSON (a path, or a name under configs/: tiny, paper-256, ...)")
    parser.add_argument("--resume", default="auto", help="auto (latest checkpoint of the run if any, default), latest, none, or a checkpoint folder")
    parser.add_argument("--output-dir", default=None, help="run folder (default: the config's output_dir or runs/<name>)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the schedule's length (steps)")
    parser.add_argument("--stop-at-step", type=int, default=None, help="stop (with a checkpoint) at this step without changing the schedule")
    parser.add_argument("--data", default=None, help="override the config's data root (a prepared folder)")
    parser.add_argument("--init-from", default=None, metavar="MODEL_DIR", help="start from this model folder's weights (overrides the config's init_from)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="publish the EMA model to this Hub repo when training ends")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-missing-losses", action="store_true",
                        help="train even when a weighted loss's network is missing here (it is switched off and listed in the checkpoint)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.init_from:
        cfg.init_from = args.init_from
    if args.max_steps:
        cfg.max_steps = args.max_steps
    if args.data:
        cfg.data = {"root": args.data}
    from idface.training.preflight import preflight

    switched_off = preflight(cfg, allow_missing=args.allow_missing_losses)  # refuses to start unless allowed
    trainer = Trainer(cfg, resume=args.resume, progress=not args.no_progress)
    trainer.disabled.update(switched_off)
    summary = trainer.train(stop_at_step=args.stop_at_step)
    if trainer.accelerator.is_main_process:
        print(json.dumps({k: summary[k] for k in ("step", "total_steps", "sec_per_step", "losses", "metrics", "disabled_terms")}, default=str))
        if args.push_to_hub:
            if summary["step"] < summary["total_steps"]:
                print(f"not pushing: the run stopped at step {summary['step']} of {summary['total_steps']}", file=sys.stderr)
            else:
                print("pushed:", push_to_hub(trainer, args.push_to_hub, args.private))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return 0
