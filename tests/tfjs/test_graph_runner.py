"""The TFJS reader and runner on small hand-made graphs: dequantisation, TensorFlow's padding
rules, pooling, resizing, transposed convolution, and unknown ops refused by name."""

import base64
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from idface.tfjs.graph import TfjsFormatError, read_graph_model
from idface.tfjs.runner import GraphModule, UnsupportedOpError


def _s(text):
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values):
    return {"list": {"i": [str(v) for v in values]}}


def write_model(folder, nodes, weights, quant=None):
    """A graph-model folder: nodes [(name, op, inputs, attrs)], weights {name: array} in one shard.
    quant: {name: "float16" | ("uint8", scale, min)}."""
    quant = quant or {}
    data, specs = b"", []
    for name, arr in weights.items():
        arr = np.asarray(arr)
        spec = {"name": name, "shape": list(arr.shape), "dtype": "int32" if arr.dtype.kind == "i" else "float32"}
        q = quant.get(name)
        if q == "float16":
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            data += arr.astype(np.float16).tobytes()
        elif q:
            _, scale, lo = q
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo, "original_dtype": "float32"}
            data += np.round((arr - lo) / scale).astype(np.uint8).tobytes()
        else:
            data += arr.astype(np.int32 if spec["dtype"] == "int32" else np.float32).tobytes()
        specs.append(spec)
    consts = [{"name": n, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}} for n in weights]
    graph = [{"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "-1"}]}}}}]
    graph += [{"name": n, "op": op, "input": list(ins), "attr": attrs} for n, op, ins, attrs in nodes]
    doc = {"format": "graph-model", "modelTopology": {"node": consts + graph},
           "weightsManifest": [{"paths": ["w.bin"], "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "w.bin").write_bytes(data)
    return folder / "model.json"


def conv_node(name, x, w, padding="SAME", stride=1, op="Conv2D", extra=(), fused=()):
    attrs = {"padding": _s(padding), "strides": _ints([1, stride, stride, 1]), "data_format": _s("NHWC")}
    if fused:
        attrs["fused_ops"] = {"list": {"s": [base64.b64encode(f.encode()).decode() for f in fused]}}
    return (name, op, [x, w, *extra], attrs)


def test_dequantises_float16_and_uint8(tmp_path):
    w16 = np.array([0.1, -2.5, 3.14159], np.float32)
    w8 = np.array([-1.0, 0.0, 0.5, 1.0], np.float32)
    path = write_model(tmp_path, [("y", "Identity", ["x"], {})], {"a": w16, "b": w8},
                       {"a": "float16", "b": ("uint8", 2 / 255, -1.0)})
    g = read_graph_model(path)
    assert np.array_equal(g.weights["a"], w16.astype(np.float16).astype(np.float32))
    assert np.abs(g.weights["b"] - w8).max() <= 1 / 255 + 1e-6
    assert g.weights["a"].dtype == np.float32 and g.outputs == ["y"] and g.inputs == ["x"]


def test_missing_shard_and_short_shard_are_named(tmp_path):
    path = write_model(tmp_path, [("y", "Identity", ["x"], {})], {"a": np.ones(4, np.float32)})
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    with pytest.raises(TfjsFormatError, match="end before weight 'a'"):
        read_graph_model(path)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(TfjsFormatError, match="w.bin is missing"):
        read_graph_model(path)


def test_unknown_ops_are_refused_by_name(tmp_path):
    nodes = [("e", "Erf", ["x"], {}), ("s", "Atan2", ["e", "e"], {})]
    path = write_model(tmp_path, nodes, {"k": np.ones(1, np.float32)})
    with pytest.raises(UnsupportedOpError, match="unsupported TensorFlow op\\(s\\) Atan2, Erf"):
        GraphModule(read_graph_model(path))


@pytest.mark.parametrize("size,stride", [(5, 1), (6, 2), (7, 2)])
def test_same_padding_follows_tensorflow(tmp_path, size, stride):
    """3x3 all-ones kernel on ones: each output counts the real pixels under the kernel; TF puts
    the odd padding pixel after (bottom/right), and the output is ceil(size / stride)."""
    w = np.ones((3, 3, 1, 1), np.float32)
    net = GraphModule(read_graph_model(write_model(tmp_path, [conv_node("y", "x", "w", stride=stride)], {"w": w})))
    y = net(torch.ones(1, size, size, 1))["y"][0, :, :, 0]
    out = -(-size // stride)
    assert y.shape == (out, out)
    total = max((out - 1) * stride + 3 - size, 0)
    before = total // 2
    rows = torch.tensor([sum(0 <= i * stride - before + k < size for k in range(3)) for i in range(out)], dtype=torch.float32)
    assert torch.equal(y, rows[:, None] * rows[None, :])


def test_fused_conv_bias_prelu_and_depthwise(tmp_path, rng):
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    alpha = np.full(4, 0.25, np.float32)
    dw = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)
    nodes = [conv_node("c", "x", "w", "VALID", op="_FusedConv2D", extra=("b", "alpha"), fused=("BiasAdd", "Prelu")),
             conv_node("d", "c", "dw", "VALID", op="DepthwiseConv2dNative")]
    net = GraphModule(read_graph_model(write_model(tmp_path, nodes, {"w": w, "b": b, "alpha": alpha, "dw": dw})))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    c = F.conv2d(xt, torch.from_numpy(w).permute(3, 2, 0, 1)) + torch.from_numpy(b)[:, None, None]
    c = torch.where(c >= 0, c, 0.25 * c)
    # depthwise, multiplier 2: output channel k*2+m reads input channel k with dw[..., k, m]
    ref = torch.stack([F.conv2d(c[:, k:k + 1], torch.from_numpy(dw[:, :, k, m])[None, None])[:, 0]
                       for k in range(4) for m in range(2)], 1)
    assert torch.allclose(net(torch.from_numpy(x))["d"], ref.permute(0, 2, 3, 1), atol=1e-5)


def test_avg_pool_same_excludes_padding_and_resize_modes(tmp_path, rng):
    pool = ("p", "AvgPool", ["x"], {"ksize": _ints([1, 3, 3, 1]), "strides": _ints([1, 2, 2, 1]),
                                   "padding": _s("SAME"), "data_format": _s("NHWC")})
    half = ("r", "ResizeBilinear", ["x", "size"], {"half_pixel_centers": {"b": True}, "align_corners": {"b": False}})
    corners = ("q", "ResizeBilinear", ["x", "size"], {"align_corners": {"b": True}})
    net = GraphModule(read_graph_model(write_model(tmp_path, [pool, half, corners], {"size": np.array([9, 13], np.int32)})))
    assert torch.equal(net(torch.ones(1, 7, 7, 2), outputs=["p"])["p"], torch.ones(1, 4, 4, 2))
    x = torch.from_numpy(rng.normal(size=(1, 5, 6, 2)).astype(np.float32))
    out = net(x, outputs=["r", "q"])
    for key, align in (("r", False), ("q", True)):
        ref = F.interpolate(x.permute(0, 3, 1, 2), size=(9, 13), mode="bilinear", align_corners=align)
        assert torch.allclose(out[key], ref.permute(0, 2, 3, 1), atol=1e-5)


def test_transposed_conv_same_matches_torch(tmp_path, rng):
    """Conv2DBackpropInput, stride 2, SAME, 4x4 kernel: torch's conv_transpose2d with padding 1."""
    w = rng.normal(size=(4, 4, 3, 5)).astype(np.float32)  # [kh, kw, out, in]
    node = ("t", "Conv2DBackpropInput", ["shape", "w", "x"],
            {"strides": _ints([1, 2, 2, 1]), "padding": _s("SAME"), "data_format": _s("NHWC")})
    net = GraphModule(read_graph_model(write_model(tmp_path, [node], {"shape": np.array([1, 8, 8, 3], np.int32), "w": w})))
    x = torch.from_numpy(rng.normal(size=(1, 4, 4, 5)).astype(np.float32))
    ref = F.conv_transpose2d(x.permute(0, 3, 1, 2), torch.from_numpy(w).permute(3, 2, 0, 1), stride=2, padding=1)
    assert torch.allclose(net(x)["t"], ref.permute(0, 2, 3, 1), atol=1e-5)


def test_gradients_reach_the_input(tmp_path, rng):
    w = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    nodes = [conv_node("c", "x", "w"), ("m", "Mean", ["c", "axes"], {"keep_dims": {"b": False}})]
    net = GraphModule(read_graph_model(write_model(tmp_path, nodes, {"w": w, "axes": np.array([1, 2], np.int32)})))
    x = torch.from_numpy(rng.normal(size=(2, 5, 5, 2)).astype(np.float32)).requires_grad_(True)
    net(x)["m"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(b.requires_grad for b in net.buffers())


def test_dynamic_reshape_shape_slice_pack(tmp_path, rng):
    """Shape -> StridedSlice (shrink axis 0) -> Pack([batch, -1, 4]) -> Reshape, as detectors write it."""
    nodes = [("sh", "Shape", ["x"], {}),
             ("b", "StridedSlice", ["sh", "begin", "end", "step"], {"shrink_axis_mask": {"i": "1"}}),
             ("shape", "Pack", ["b", "minus1", "four"], {"axis": {"i": "0"}}),
             ("y", "Reshape", ["x", "shape"], {})]
    consts = {"begin": np.array([0], np.int32), "end": np.array([1], np.int32), "step": np.array([1], np.int32),
              "minus1": np.array(-1, np.int32), "four": np.array(4, np.int32)}
    net = GraphModule(read_graph_model(write_model(tmp_path, nodes, consts)))
    x = torch.from_numpy(rng.normal(size=(3, 2, 2, 8)).astype(np.float32))
    assert torch.equal(net(x)["y"], x.reshape(3, -1, 4))


def test_relu6_chain_is_fused_but_inner_results_stay_reachable(tmp_path, rng):
    """Relu -> Minimum(6) -> Maximum(0) runs as one clamp; asking for the inner Relu still works."""
    nodes = [("r", "Relu", ["x"], {}), ("mn", "Minimum", ["r", "six"], {}), ("mx", "Maximum", ["mn", "zero"], {})]
    net = GraphModule(read_graph_model(write_model(
        tmp_path, nodes, {"six": np.array(6.0, np.float32), "zero": np.array(0.0, np.float32)})))
    x = torch.from_numpy(rng.normal(scale=8, size=(2, 3, 3, 4)).astype(np.float32))
    assert len(net._plan(("mx",))) == 1
    assert torch.equal(net(x)["mx"], x.clamp(0, 6))
    both = net(x, outputs=["r", "mx"])
    assert torch.equal(both["r"], x.relu()) and torch.equal(both["mx"], x.clamp(0, 6))
