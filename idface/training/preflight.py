"""Before a training run starts: every loss the config weights must be computable on this machine.

    switched_off = preflight(cfg, allow_missing=False)   # InputError naming every missing piece

A loss whose weight is non-zero needs its network's pretrained file: the identity token and the
identity loss need the configured recognizer (ArcFace for paper-256), the perceptual loss needs
torchvision's ImageNet VGG19. Each is looked for (and fetched once, when downloads are allowed) by
idface.weights. When any is missing the run refuses to start, with one message that names every
missing piece and how to get it (and the data folder too, when that is missing), unless the run
allows it (`--allow-missing-losses`, or "allow_missing_losses": true in the config): then the
missing terms are switched off, logged, and listed in the checkpoint's trainer_state.json
("disabled_terms") and in the model card ("switched off").
"""

from __future__ import annotations

import logging
from pathlib import Path

from idface.errors import InputError, UnavailableError
from idface.training.config import REPO_ROOT, TrainConfig

log = logging.getLogger("idface.train")

FETCH_HINT = "fetch them once with `python -m idface weights fetch` where the network allows (README: Training)"


def recognizer_name(cfg: TrainConfig) -> str | None:
    """The recognizer the run uses for the identity token: the config's, else the model preset's."""
    name = cfg.identity_recognizer
    if name is None:
        from idface.model.config import get_config

        spec = dict(cfg.model)
        preset = spec.pop("preset", "paper-256")
        name = get_config(preset, **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}).identity_recognizer
    return None if name in (None, "none") else name


def recognizer_problem(name: str) -> str | None:
    """None when the recognizer can run here (ArcFace fetched once when allowed), else why not."""
    from idface.identity.registry import recognizer_status
    from idface.weights import arcface_weights_path

    if name == "arcface":
        try:
            arcface_weights_path()  # local, HF cache, then the network when downloads are allowed
        except Exception:
            pass  # the status below says why
    status = recognizer_status().get(name, f"unknown recognizer {name!r}")
    return None if status == "available" else status


def missing_losses(cfg: TrainConfig) -> dict[str, str]:
    """term -> what is missing and how to get it, for every weighted loss that cannot run here."""
    from idface.weights import vgg19_weights_path

    w = cfg.loss_weights
    missing: dict[str, str] = {}
    rec = recognizer_name(cfg)
    if rec is not None:
        problem = recognizer_problem(rec)
        if problem:
            missing["identity"] = (f"recognizer {rec!r} (identity token and identity loss, weight {w.identity}) unavailable: {problem}"
                                   " (or set identity_recognizer to \"dlib-resnet\", which works offline, with the model's identity_dim 128)")
    elif w.identity:
        missing["identity"] = (f"identity loss weight {w.identity} but identity_recognizer is \"none\" "
                               "(choose a recognizer, or set loss_weights.identity to 0)")
    if w.perceptual:
        try:
            vgg19_weights_path()
        except UnavailableError as err:
            missing["perceptual"] = str(err)  # the message the trainer records too
    return missing


def data_problem(cfg: TrainConfig) -> str | None:
    root = cfg.data.get("root")
    if root is None:
        return None
    path = Path(root) if Path(root).is_absolute() else REPO_ROOT / root
    if not path.is_dir():
        return f"data: prepared folder {path} not found (python -m idface prepare, see README: Training; or --data DIR)"
    return None


def preflight(cfg: TrainConfig, allow_missing: bool = False) -> dict[str, str]:
    """Check a run before anything is built. Returns the terms switched off (empty unless
    allowed); adjusts cfg so that the run proceeds without them. Raises InputError otherwise."""
    allow_missing = allow_missing or cfg.allow_missing_losses
    missing = missing_losses(cfg)
    data = data_problem(cfg)
    if data or (missing and not allow_missing):
        pieces = [f"[{term}] {why}" for term, why in missing.items()] if not allow_missing else []
        if data:
            pieces.append(data)
        hint = f" Losses: {FETCH_HINT}, or pass --allow-missing-losses to train without them." if missing and not allow_missing else ""
        raise InputError(f"training cannot start, {len(pieces)} missing piece(s): " + " | ".join(pieces) + "." + hint)
    for term, why in missing.items():
        log.warning("--allow-missing-losses: training WITHOUT %s: %s", term, why)
    if "identity" in missing:
        cfg.identity_recognizer = "none"  # the null identity token; the identity loss is off
    return missing
