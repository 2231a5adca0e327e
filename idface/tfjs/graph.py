"""Reading a TensorFlow.js graph model: model.json (a TensorFlow GraphDef as JSON plus a weights
manifest) and its binary weight shards.

    graph = read_graph_model("weights/cache/human-models-3.0.4/models/faceres.json")
    graph.nodes[3]            -> Node(name="conv1_bn/...", op="Conv2D", inputs=["input_1", ...], attrs={...})
    graph.weights["feats/kernel"]  -> np.ndarray float32 [1024, 256] (dequantised)

The format (tfjs-converter's "graph-model"): `modelTopology.node` lists NodeDefs whose attribute
values are JSON-encoded protobuf AttrValues (strings base64, integers as decimal strings);
`weightsManifest` is a list of groups, each naming shard files (read in order, concatenated) and
the weights stored in them, in order, each with a dtype, a shape and an optional `quantization`
({dtype: float16} stored as IEEE half; {dtype: uint8|uint16, scale, min} stored as q, value =
q * scale + min). Every weight comes back as float32 or int32 numpy.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idface.errors import UnavailableError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


class TfjsFormatError(UnavailableError):
    """A model.json or weight shard that cannot be read (names the file and the problem)."""


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: list[str]        # producer names, "name" or "name:k" (k-th output); control inputs dropped
    attrs: dict              # decoded: str, int, float, bool, list, or {"dtype", "shape"} for tensors


@dataclass
class TfjsGraph:
    path: Path
    nodes: list[Node]
    weights: dict[str, np.ndarray]          # Const node name -> float32 / int32 array
    inputs: list[str]                       # Placeholder names, in graph order
    outputs: list[str] = field(default_factory=list)   # signature outputs (node names), else sinks

    def ops(self) -> set[str]:
        return {n.op for n in self.nodes}


def _decode_attr(value: dict):
    """One JSON AttrValue -> a Python value."""
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8", "replace")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    if "tensor" in value:
        t = value["tensor"]
        return {"dtype": t.get("dtype"), "shape": [int(d.get("size", 0)) for d in t.get("tensorShape", {}).get("dim", [])]}
    if "list" in value:
        lst = value["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode("utf-8", "replace") for s in lst["s"]]
        if "i" in lst:
            return [int(i) for i in lst["i"]]
        if "f" in lst:
            return [float(f) for f in lst["f"]]
        return []
    return None


def _node_name(ref: str) -> str:
    """'name:1' -> 'name' (output index dropped); signature names end in ':0'."""
    return ref.split(":")[0]


def _read_weights(manifest: list[dict], folder: Path, json_path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b""
        for shard in group.get("paths", []):
            shard_path = folder / shard
            if not shard_path.is_file():
                raise TfjsFormatError(f"{json_path.name}: weight shard {shard_path} is missing")
            data += shard_path.read_bytes()
        offset = 0
        for spec in group.get("weights", []):
            name, shape = spec["name"], [int(s) for s in spec.get("shape", [])]
            dtype = spec.get("dtype", "float32")
            if dtype not in _DTYPES:
                raise TfjsFormatError(f"{json_path.name}: weight {name!r} has unsupported dtype {dtype!r}")
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            stored = _QUANT.get(quant["dtype"]) if quant else _DTYPES[dtype]
            if stored is None:
                raise TfjsFormatError(f"{json_path.name}: weight {name!r} has unsupported quantization {quant!r}")
            nbytes = count * np.dtype(stored).itemsize
            if offset + nbytes > len(data):
                raise TfjsFormatError(f"{json_path.name}: weight shards end before weight {name!r} "
                                      f"(need {offset + nbytes} bytes, have {len(data)})")
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += nbytes
            if quant and quant["dtype"] == "float16":
                arr = raw.astype(np.float32)
            elif quant:  # affine: value = q * scale + min (tfjs-converter's uint8/uint16)
                arr = (raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"]))
                if dtype == "int32":
                    arr = np.round(arr)
            else:
                arr = raw.copy()
            out[name] = arr.astype(_DTYPES[dtype]).reshape(shape)
        if offset != len(data):
            raise TfjsFormatError(f"{json_path.name}: {len(data) - offset} unread bytes after the last weight")
    return out


def read_graph_model(path: str | os.PathLike, with_weights: bool = True) -> TfjsGraph:
    """model.json (+ shards beside it) -> TfjsGraph. `with_weights=False` reads the topology only."""
    json_path = Path(path)
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise TfjsFormatError(f"cannot read TFJS model {json_path}: {err}") from None
    if doc.get("format") not in (None, "graph-model") or "modelTopology" not in doc:
        raise TfjsFormatError(f"{json_path}: not a TFJS graph model (format {doc.get('format')!r})")
    nodes = []
    for raw in doc["modelTopology"].get("node", []):
        attrs = {k: _decode_attr(v) for k, v in raw.get("attr", {}).items()}
        inputs = [i for i in raw.get("input", []) if not i.startswith("^")]
        nodes.append(Node(raw["name"], raw["op"], inputs, attrs))
    weights = _read_weights(doc.get("weightsManifest", []), json_path.parent, json_path) if with_weights else {}
    placeholders = [n.name for n in nodes if n.op == "Placeholder"]
    signature = doc.get("signature") or (doc.get("userDefinedMetadata") or {}).get("signature") or {}
    outputs = [_node_name(o.get("name", k)) for k, o in signature.get("outputs", {}).items()]
    if not outputs:
        used = {_node_name(i) for n in nodes for i in n.inputs}
        outputs = [n.name for n in nodes if n.name not in used and n.op not in ("Const", "Placeholder")]
    return TfjsGraph(json_path, nodes, weights, placeholders, outputs)
