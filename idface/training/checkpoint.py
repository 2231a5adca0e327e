"""Training checkpoints: everything a resumed run needs to continue exactly, as safetensors.

    CKPT/model.safetensors          generator-side weights (style encoder, identity projection, generator)
    CKPT/discriminator.safetensors  discriminator (spectral-norm u/v vectors included)
    CKPT/optimizer_g.safetensors    Adam state, flattened; param_groups in the file's metadata
    CKPT/optimizer_d.safetensors
    CKPT/ema/                       the EMA model as a Hub checkpoint (config.json, model.safetensors,
                                    README.md): `idface eval --checkpoint CKPT/ema` loads it directly
    CKPT/rng_<rank>.safetensors     torch / numpy / python (and CUDA) RNG state of every process
    CKPT/trainer_state.json         step, config, loss-scaler state, last metrics

A checkpoint folder is written under a temporary name and renamed when complete, so a run killed
mid-save leaves no half checkpoint that `--resume latest` would pick.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CKPT_PATTERN = re.compile(r"step_(\d+)")
# the model card (README.md of final/ and of a checkpoint's ema/) ends with the run's training
# config as a JSON block under this line (Trainer.model_card_notes; read by evaluation.seen)
CARD_CONFIG_HEADING = "Training config:"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_state_dict(state: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    save_file(_contiguous(state), str(path), metadata=metadata)


def optimizer_to_tensors(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {}
    for idx, pstate in opt_state["state"].items():
        for key, value in pstate.items():
            tensors[f"state.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": json.dumps(opt_state["param_groups"])}


def optimizer_from_file(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    groups = json.loads(meta["param_groups"])
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def rng_state() -> dict[str, torch.Tensor]:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python_state": torch.tensor(py_internal, dtype=torch.int64),
        "python_meta": torch.tensor([py_version, 0 if py_gauss is None else 1], dtype=torch.int64),
        "python_gauss": torch.tensor([0.0 if py_gauss is None else py_gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda_{i}"] = s
    return out


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    meta = state["numpy_meta"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(meta[0]), int(meta[1]),
                         float(state["numpy_gauss"][0])))
    version, has_gauss = state["python_meta"].tolist()
    gauss = float(state["python_gauss"][0]) if has_gauss else None
    random.setstate((int(version), tuple(int(v) for v in state["python_state"].tolist()), gauss))
    if torch.cuda.is_available():
        states = [state[k] for k in sorted(k for k in state if k.startswith("cuda_"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def list_checkpoints(run_dir: Path) -> list[Path]:
    ckpt_root = Path(run_dir) / "checkpoints"
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if p.is_dir() and CKPT_PATTERN.fullmatch(p.name) and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(CKPT_PATTERN.fullmatch(p.name).group(1)))


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


def finalize(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def prune(run_dir: Path, keep: int) -> None:
    ckpts = list_checkpoints(run_dir)
    for p in ckpts[: max(0, len(ckpts) - keep)]:
        shutil.rmtree(p, ignore_errors=True)


__all__ = [
    "save_state_dict", "load_file", "optimizer_to_tensors", "optimizer_from_file", "rng_state",
    "set_rng_state", "list_checkpoints", "checkpoint_dir", "finalize", "prune", "CARD_CONFIG_HEADING",
]
