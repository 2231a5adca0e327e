"""TFJS graph models as torch modules, with their weights converted once to safetensors.

    net = load_graph_model("faceres")              # GraphModule, eval, frozen, on `device`
    net(x_nhwc)["global_pooling/Mean"]             # [B, 1024]

First use reads models/<name>.json and its shards (dequantising float16 / uint8 weights) and
writes <cache>/human-models-3.0.4/<name>.<sha256 of json+bin, 16 hex>.safetensors; later loads
read that file and only the (small) topology from model.json. A cache file that cannot be read
or written is never fatal: the shards are converted again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from idface.tfjs.graph import read_graph_model
from idface.weights.human_models import FILES, PACKAGE, VERSION, cache_folder, model_json
from idface.tfjs.runner import GraphModule

CACHE_FORMAT = "idface-tfjs-graph-v1"


def _source_key(name: str) -> str:
    """16 hex of the pinned sha256s of the model's json and bin (what the weights are made of)."""
    both = FILES[f"models/{name}.json"] + FILES[f"models/{name}.bin"]
    return hashlib.sha256(both.encode()).hexdigest()[:16]


def converted_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    return cache_folder(cache) / f"{name}.{_source_key(name)}.safetensors"


def _read_cached(path: Path) -> dict[str, np.ndarray] | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as fh:
            if (fh.metadata() or {}).get("format") != CACHE_FORMAT:
                return None
            return {fh.metadata()[k]: fh.get_tensor(k) for k in fh.keys()}
    except Exception:  # unreadable or truncated cache: convert again
        return None


def _write_cached(path: Path, weights: dict[str, np.ndarray], source: str) -> None:
    from safetensors.numpy import save_file

    keys = {f"w{i:04d}": name for i, name in enumerate(weights)}  # TF names hold '/', ':'
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(weights[n]) for k, n in keys.items()}, str(tmp),
                  metadata={"format": CACHE_FORMAT, "source": source, "package": f"{PACKAGE}@{VERSION}", **keys})
        os.replace(tmp, path)  # atomic: parallel loaders never see half a file
    except OSError:  # read-only or full disk: run from the converted weights without caching
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def load_graph_model(name: str, device: str | torch.device = "cpu", *, download: bool = False,
                     cache: str | os.PathLike | None = None) -> GraphModule:
    """A kept model of the package (e.g. "faceres") as a frozen GraphModule on `device`."""
    json_path = model_json(name, download, cache)
    cached = converted_path(name, cache)
    weights = _read_cached(cached)
    graph = read_graph_model(json_path, with_weights=weights is None)
    if weights is None:
        weights = graph.weights
        _write_cached(cached, weights, f"models/{name}.json")
    net = GraphModule(graph, weights)
    return net.requires_grad_(False).eval().to(device)
