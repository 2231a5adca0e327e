"""Training configuration: one JSON file under configs/ (configs/paper-256.json, configs/tiny.json).

    {
      "name": "paper-256",
      "model": {"preset": "paper-256"},                # idface.model.config preset + field overrides
      "discriminator": {"preset": "paper-256"},        # idface.model.discriminator preset + overrides
      "data": {"root": "data/celebamask-256"},         # see idface.training.data.dataset_from_config
      "augment": {"flip": 0.5},                        # idface.training.data.AugmentConfig
      "batch_size": 8, "epochs": 100, "decay_epochs": 50,
      "loss_weights": {"feature_matching": 10, "perceptual": 10, ...}
    }

Every field below has a default; an unknown field is an error (typos must not pass silently).
Relative paths are resolved against the repository root.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from idface.errors import InputError
from idface.training.losses import LossWeights

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"


@dataclass
class TrainConfig:
    name: str = "run"
    model: dict = field(default_factory=lambda: {"preset": "paper-256"})
    discriminator: dict = field(default_factory=lambda: {"preset": "paper-256"})
    data: dict = field(default_factory=dict)
    augment: dict = field(default_factory=lambda: {"flip": 0.5})
    loss_weights: LossWeights = field(default_factory=LossWeights)

    # identity: recognizer from idface.identity.registry (None: the model's config decides;
    # "none": no recognizer, the null identity token and no identity loss);
    # identity_dropout: share of samples trained with the null identity token
    identity_recognizer: str | None = None
    identity_dropout: float = 0.0
    # identity injection (idface.training.injection): the share of each batch whose identity token
    # comes from another person B (appearance losses still compare with the photo A, the identity
    # terms pull towards B and push away from A by injection_margin past the recognizer's threshold),
    # and the pool of foreign embeddings (views, interpolate, photos, holdout: injection.PoolConfig)
    injection_fraction: float = 0.5
    injection_margin: float = 0.05
    identity_pool: dict = field(default_factory=dict)
    # start from a model folder's weights (Hub format; tensors it lacks, e.g. a new identity path,
    # keep their initialisation); a resumed run's own checkpoint takes precedence
    init_from: str | None = None
    # train on when a weighted loss's network is missing here (idface.training.preflight); off by default
    allow_missing_losses: bool = False

    # schedule: one step = one optimizer update of G and of D (batch_size * grad_accum * processes images)
    batch_size: int = 1
    grad_accum: int = 1
    epochs: float = 100.0  # total; ignored when max_steps is set
    decay_epochs: float = 50.0  # the last decay_epochs decay the learning rate linearly to 0
    max_steps: int | None = None
    decay_steps: int | None = None
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    lr_identity_scale: float = 1.0  # learning-rate multiplier of the identity path (projection, FiLM)
    betas: tuple[float, float] = (0.0, 0.9)
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): early EMA follows the weights
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)

    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    sample_every: int = 500
    eval_every: int = 2000
    eval_images: int = 16
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    output_dir: str | None = None  # default runs/<name>
    export_dtype: str = "float32"  # dtype of the published EMA model (final/ and --push-to-hub): float32 | float16 | bfloat16

    # ---- I/O ----
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"comment", "_comment"})
        if unknown:
            raise InputError(f"training config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in data.items() if k in known}
        if "loss_weights" in values:
            lw = values["loss_weights"]
            bad = sorted(set(lw) - {f.name for f in dataclasses.fields(LossWeights)})
            if bad:
                raise InputError(f"training config: unknown loss weight(s) {', '.join(bad)}")
            values["loss_weights"] = LossWeights(**lw)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        cfg = cls(**values)
        if cfg.mixed_precision not in ("no", "bf16", "fp16"):
            raise InputError(f"training config: mixed_precision must be no, bf16 or fp16; got {cfg.mixed_precision!r}")
        if cfg.export_dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(f"training config: export_dtype must be float32, float16 or bfloat16; got {cfg.export_dtype!r}")
        if not 0 <= cfg.injection_fraction <= 1:
            raise InputError(f"training config: injection_fraction must be in [0, 1]; got {cfg.injection_fraction}")
        if cfg.batch_size < 1 or cfg.grad_accum < 1:
            raise InputError("training config: batch_size and grad_accum must be >= 1")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def run_dir(self) -> Path:
        p = Path(self.output_dir) if self.output_dir else Path("runs") / self.name
        return p if p.is_absolute() else REPO_ROOT / p


def load_config(path_or_name: str | Path) -> TrainConfig:
    """A JSON file, or the name of one under configs/ ('tiny' -> configs/tiny.json)."""
    path = Path(path_or_name)
    if not path.is_file() and (CONFIG_DIR / f"{path_or_name}.json").is_file():
        path = CONFIG_DIR / f"{path_or_name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json"))) if CONFIG_DIR.is_dir() else "none"
        raise InputError(f"training config {path_or_name} not found (configs/ holds: {known})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"training config {path} is not valid JSON: {err}") from None
    return TrainConfig.from_dict(data)
