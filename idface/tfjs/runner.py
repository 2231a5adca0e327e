"""Running a TFJS graph model in PyTorch: each TensorFlow op maps to a few torch calls.

    net = GraphModule(read_graph_model(".../faceres.json"))      # refuses unknown ops by name
    out = net(x_nhwc, outputs=["global_pooling/Mean"])          # {name: tensor}, differentiable

Tensors flow in TensorFlow's NHWC layout ([B, H, W, C]), so Reshape, Mean axes, Concat axes and
Squeeze dims mean what the graph says; convolutions and pools look at the same storage as NCHW
(`permute(0, 3, 1, 2)` of an NHWC tensor is a channels_last NCHW view, so no copy is made).
Float constants are buffers (they follow .to(device) and .double()); integer constants (shapes,
axes, paddings) stay Python values. The whole forward is torch autograd, batch-size free where the
graph is (a Reshape that hard-codes batch 1 is kept as the graph wrote it).

Op coverage: what faceres, mobileface, mobilefacenet, blazeface*, facemesh, facemesh-detection-*,
iris, selfie and meet use (see OPS). Anything else (e.g. facemesh-attention's GatherV2, Atan2,
BatchMatMulV2, ...) raises UnsupportedOpError naming the ops at construction.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from idface.errors import UnavailableError
from idface.tfjs.graph import Node, TfjsGraph, _node_name


class UnsupportedOpError(UnavailableError):
    """The graph uses a TensorFlow op the runner does not implement."""


# --- helpers -------------------------------------------------------------------------------------
def _ints(v) -> list[int]:
    if isinstance(v, torch.Tensor):
        return [int(i) for i in v.reshape(-1).tolist()]
    return [int(i) for i in np.asarray(v).reshape(-1).tolist()]


def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one spatial dim (extra pixel goes after)."""
    eff = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _pad_nchw(x: torch.Tensor, node: Node, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
              value: float = 0.0) -> torch.Tensor:
    """Pad an NCHW view as the node's `padding` attr says (SAME / VALID / EXPLICIT)."""
    mode = node.attrs.get("padding", "VALID")
    if mode == "VALID":
        return x
    if mode == "SAME":
        top, bottom = _same_pad(x.shape[2], k[0], s[0], d[0])
        left, right = _same_pad(x.shape[3], k[1], s[1], d[1])
    elif mode == "EXPLICIT":
        p = node.attrs.get("explicit_paddings", [])  # NHWC order: [0,0, t,b, l,r, 0,0]
        top, bottom, left, right = p[2], p[3], p[4], p[5]
    else:
        raise UnsupportedOpError(f"{node.op} {node.name!r}: padding {mode!r} is not supported")
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _check_nhwc(node: Node) -> None:
    fmt = node.attrs.get("data_format", "NHWC")
    if fmt != "NHWC":
        raise UnsupportedOpError(f"{node.op} {node.name!r}: data_format {fmt!r} (only NHWC)")


def _hw(values: list[int] | None, default: int = 1) -> tuple[int, int]:
    """NHWC 4-list (strides, dilations, ksize) -> (h, w)."""
    if not values:
        return default, default
    return (values[1], values[2]) if len(values) == 4 else (values[0], values[1] if len(values) > 1 else values[0])


def _activation(name: str, x: torch.Tensor, extra: list, node: Node) -> torch.Tensor:
    if name == "Relu":
        return F.relu(x)
    if name == "Relu6":
        return x.clamp(0.0, 6.0)
    if name == "Elu":
        return F.elu(x)
    if name == "Sigmoid":
        return torch.sigmoid(x)
    if name == "LeakyRelu":
        return F.leaky_relu(x, node.attrs.get("leakyrelu_alpha", 0.2))
    if name == "Prelu":
        return _prelu(x, extra[0])
    raise UnsupportedOpError(f"{node.op} {node.name!r}: fused activation {name!r} is not supported")


def _prelu(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, x * alpha)


def _fused_tail(node: Node, y: torch.Tensor, args: list) -> torch.Tensor:
    """Apply `fused_ops` (BiasAdd then an activation) on an NHWC / [B, N] result."""
    fused = node.attrs.get("fused_ops", [])
    rest = list(args)
    for op in fused:
        if op == "BiasAdd":
            y = y + rest.pop(0)
        else:
            y = _activation(op, y, rest, node)
    return y


# --- ops: each takes (node, [inputs]) and returns a tensor (NHWC where spatial) --------------------
def _conv2d(node: Node, ins: list) -> torch.Tensor:
    _check_nhwc(node)
    x, w = ins[0], ins[1]                      # x [B, H, W, Cin], w [kh, kw, Cin, Cout]
    s, d = _hw(node.attrs.get("strides")), _hw(node.attrs.get("dilations"))
    xc = _pad_nchw(x.permute(0, 3, 1, 2), node, (w.shape[0], w.shape[1]), s, d)
    y = F.conv2d(xc, w.permute(3, 2, 0, 1), stride=s, dilation=d).permute(0, 2, 3, 1)
    return _fused_tail(node, y, ins[2:])


def _depthwise(node: Node, ins: list) -> torch.Tensor:
    _check_nhwc(node)
    x, w = ins[0], ins[1]                      # w [kh, kw, Cin, mult] -> torch [Cin*mult, 1, kh, kw]
    kh, kw, cin, mult = w.shape
    s, d = _hw(node.attrs.get("strides")), _hw(node.attrs.get("dilations"))
    xc = _pad_nchw(x.permute(0, 3, 1, 2), node, (kh, kw), s, d)
    wt = w.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
    y = F.conv2d(xc, wt, stride=s, dilation=d, groups=cin).permute(0, 2, 3, 1)
    return _fused_tail(node, y, ins[2:])


def _conv_transpose(node: Node, ins: list) -> torch.Tensor:
    """Conv2DBackpropInput(output_shape, filter [kh, kw, Cout, Cin], x [B, H, W, Cin])."""
    _check_nhwc(node)
    out_shape, w, x = _ints(ins[0]), ins[1], ins[2]
    s = _hw(node.attrs.get("strides"))
    kh, kw = w.shape[0], w.shape[1]
    y = F.conv_transpose2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), stride=s)  # [B, Cout, H', W']
    oh, ow = out_shape[1], out_shape[2]
    mode = node.attrs.get("padding", "VALID")
    top, left = (_same_pad(oh, kh, s[0])[0], _same_pad(ow, kw, s[1])[0]) if mode == "SAME" else (0, 0)
    if mode not in ("SAME", "VALID"):
        raise UnsupportedOpError(f"{node.op} {node.name!r}: padding {mode!r} is not supported")
    need_h, need_w = top + oh - y.shape[2], left + ow - y.shape[3]
    if need_h > 0 or need_w > 0:
        y = F.pad(y, (0, max(need_w, 0), 0, max(need_h, 0)))
    return y[:, :, top:top + oh, left:left + ow].permute(0, 2, 3, 1)


def _pool(node: Node, ins: list, kind: str) -> torch.Tensor:
    _check_nhwc(node)
    x = ins[0].permute(0, 3, 1, 2)
    k, s = _hw(node.attrs.get("ksize")), _hw(node.attrs.get("strides"))
    if kind == "max":
        return F.max_pool2d(_pad_nchw(x, node, k, s, (1, 1), value=-math.inf), k, s).permute(0, 2, 3, 1)
    # TF's average excludes padding: sum over the window / number of real pixels in it
    total = F.avg_pool2d(_pad_nchw(x, node, k, s, (1, 1)), k, s, divisor_override=1)
    ones = torch.ones_like(x[:1, :1])
    count = F.avg_pool2d(_pad_nchw(ones, node, k, s, (1, 1)), k, s, divisor_override=1)
    return (total / count).permute(0, 2, 3, 1)


def _matmul(node: Node, ins: list) -> torch.Tensor:
    a, b = ins[0], ins[1]
    if node.attrs.get("transpose_a"):
        a = a.transpose(-1, -2)
    if node.attrs.get("transpose_b"):
        b = b.transpose(-1, -2)
    return _fused_tail(node, a @ b, ins[2:])


def _reduce(fn: Callable) -> Callable:
    def op(node: Node, ins: list) -> torch.Tensor:
        x = ins[0]
        axes = [a % x.ndim for a in _ints(ins[1])]
        keep = bool(node.attrs.get("keep_dims", False))
        return fn(x, dim=axes, keepdim=keep) if axes else x
    return op


def _amax(x, dim, keepdim):
    return torch.amax(x, dim=dim, keepdim=keepdim)


def _amin(x, dim, keepdim):
    return torch.amin(x, dim=dim, keepdim=keepdim)


def _reshape(node: Node, ins: list) -> torch.Tensor:
    return ins[0].reshape(_ints(ins[1]))


def _squeeze(node: Node, ins: list) -> torch.Tensor:
    x = ins[0]
    dims = node.attrs.get("squeeze_dims") or [i for i, n in enumerate(x.shape) if n == 1]
    for d in sorted((d % x.ndim for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


def _pad(node: Node, ins: list) -> torch.Tensor:
    x, p = ins[0], _ints(ins[1])               # paddings [[before, after]] per dim, first dim first
    value = float(torch.as_tensor(ins[2]).reshape(-1)[0]) if node.op == "PadV2" else 0.0
    flat = []
    for dim in reversed(range(x.ndim)):
        flat += [p[2 * dim], p[2 * dim + 1]]
    return F.pad(x, flat, value=value)


def _concat(node: Node, ins: list) -> torch.Tensor:
    axis = _ints(ins[-1])[0]
    return torch.cat(list(ins[:-1]), dim=axis)


def _resize_bilinear(node: Node, ins: list) -> torch.Tensor:
    """tf.image.resize bilinear on NHWC with align_corners / half_pixel_centers as in the graph."""
    x, (oh, ow) = ins[0], _ints(ins[1])
    align = bool(node.attrs.get("align_corners", False))
    half = bool(node.attrs.get("half_pixel_centers", False))

    def coords(out: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i = torch.arange(out, device=x.device, dtype=torch.float64)
        if align and out > 1:
            src = i * ((size - 1) / (out - 1))
        elif half:
            src = ((i + 0.5) * (size / out) - 0.5).clamp(min=0)
        else:
            src = i * (size / out)
        lo = src.floor().clamp(max=size - 1)
        hi = (lo + 1).clamp(max=size - 1)
        return lo.long(), hi.long(), (src - lo).to(x.dtype)

    y0, y1, fy = coords(oh, x.shape[1])
    x0, x1, fx = coords(ow, x.shape[2])
    top = x[:, y0] + (x[:, y1] - x[:, y0]) * fy[None, :, None, None]
    return top[:, :, x0] + (top[:, :, x1] - top[:, :, x0]) * fx[None, None, :, None]


def _depth_to_space(node: Node, ins: list) -> torch.Tensor:
    x, bs = ins[0], int(node.attrs["block_size"])
    b, h, w, c = x.shape
    return x.reshape(b, h, w, bs, bs, c // (bs * bs)).permute(0, 1, 3, 2, 4, 5).reshape(b, h * bs, w * bs, c // (bs * bs))


def _bound(which: str) -> Callable:
    """Minimum / Maximum. Against a one-element operand (ReLU6 written as Minimum(6)) this is a
    clamp: the same values and gradients, an order of magnitude faster than torch.minimum."""
    full = torch.minimum if which == "max" else torch.maximum

    def op(node: Node, ins: list) -> torch.Tensor:
        a, b = ins
        if isinstance(b, torch.Tensor) and b.numel() == 1 and a.numel() > 1:
            return a.clamp(**{which: b.reshape(()).to(a.dtype)})
        if isinstance(a, torch.Tensor) and a.numel() == 1 and b.numel() > 1:
            return b.clamp(**{which: a.reshape(()).to(b.dtype)})
        return full(a, b)
    return op


def _shape(node: Node, ins: list) -> torch.Tensor:
    return torch.tensor(list(ins[0].shape), dtype=torch.int64)  # shape arithmetic stays on the CPU


def _strided_slice(node: Node, ins: list) -> torch.Tensor:
    """x[begin:end:strides] with TensorFlow's begin/end/shrink masks (no ellipsis / new axes)."""
    x = ins[0] if isinstance(ins[0], torch.Tensor) else torch.as_tensor(np.asarray(ins[0]))
    begin, end, strides = _ints(ins[1]), _ints(ins[2]), _ints(ins[3])
    a = node.attrs
    if a.get("ellipsis_mask", 0) or a.get("new_axis_mask", 0):
        raise UnsupportedOpError(f"StridedSlice {node.name!r}: ellipsis / new-axis masks are not supported")
    index = []
    for d, (b, e, st) in enumerate(zip(begin, end, strides)):
        if a.get("shrink_axis_mask", 0) >> d & 1:
            index.append(b)
            continue
        index.append(slice(None if a.get("begin_mask", 0) >> d & 1 else b,
                           None if a.get("end_mask", 0) >> d & 1 else e, st))
    return x[tuple(index)]


def _pack(node: Node, ins: list) -> torch.Tensor:
    parts = [t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)).reshape(()) for t in ins]
    if all(not p.is_floating_point() for p in parts):
        parts = [p.cpu().long() for p in parts]
    return torch.stack(parts, dim=int(node.attrs.get("axis", 0)))


def _binary(fn: Callable) -> Callable:
    return lambda node, ins: fn(ins[0], ins[1])


def _unary(fn: Callable) -> Callable:
    return lambda node, ins: fn(ins[0])


OPS: dict[str, Callable[[Node, list], torch.Tensor]] = {
    "Identity": _unary(lambda x: x),
    "Conv2D": _conv2d, "_FusedConv2D": _conv2d,
    "DepthwiseConv2dNative": _depthwise, "FusedDepthwiseConv2dNative": _depthwise,
    "Conv2DBackpropInput": _conv_transpose,
    "MaxPool": lambda node, ins: _pool(node, ins, "max"),
    "AvgPool": lambda node, ins: _pool(node, ins, "avg"),
    "MatMul": _matmul, "_FusedMatMul": _matmul,
    "BiasAdd": _binary(torch.add),
    "Add": _binary(torch.add), "AddV2": _binary(torch.add), "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul), "RealDiv": _binary(torch.div),
    "Minimum": _bound("max"), "Maximum": _bound("min"),
    "AddN": lambda node, ins: sum(ins[1:], ins[0]),
    "Relu": _unary(F.relu), "Relu6": _unary(lambda x: x.clamp(0.0, 6.0)),
    "Prelu": _binary(_prelu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh),
    "Abs": _unary(torch.abs), "Neg": _unary(torch.neg), "Square": _unary(torch.square),
    "Sqrt": _unary(torch.sqrt), "Rsqrt": _unary(torch.rsqrt), "Exp": _unary(torch.exp),
    "Softmax": _unary(lambda x: torch.softmax(x, dim=-1)),
    "Mean": _reduce(torch.mean), "Sum": _reduce(torch.sum), "Max": _reduce(_amax), "Min": _reduce(_amin),
    "Reshape": _reshape, "Squeeze": _squeeze,
    "Pad": _pad, "PadV2": _pad,
    "ConcatV2": _concat,
    "ResizeBilinear": _resize_bilinear,
    "DepthToSpace": _depth_to_space,
    "Shape": _shape, "StridedSlice": _strided_slice, "Pack": _pack,
}


def unsupported_ops(graph: TfjsGraph) -> list[str]:
    """Ops in the graph the runner cannot run (sorted)."""
    return sorted({n.op for n in graph.nodes if n.op not in OPS and n.op not in ("Const", "Placeholder")})


def _key(name: str) -> str:
    return name.replace(".", "__").replace("/", "__")


class GraphModule(nn.Module):
    """A TFJS graph as a torch module: forward(x [B, H, W, C] NHWC, outputs=None) -> {name: tensor}.

    The graph's float weights are buffers; nothing is trainable (requires_grad_ on the input gives
    gradients through the whole graph)."""

    def __init__(self, graph: TfjsGraph, weights: dict[str, np.ndarray | torch.Tensor] | None = None):
        super().__init__()
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpError(f"{graph.path.name}: unsupported TensorFlow op(s) {', '.join(missing)}")
        if len(graph.inputs) != 1:
            raise UnsupportedOpError(f"{graph.path.name}: {len(graph.inputs)} inputs (the runner takes one)")
        self.source = graph.path.name
        self.input_name = graph.inputs[0]
        self.default_outputs = list(graph.outputs)
        self.nodes = {n.name: n for n in graph.nodes}
        self._ints: dict[str, list[int] | np.ndarray] = {}
        self._buffer_of: dict[str, str] = {}
        for name, value in (weights if weights is not None else graph.weights).items():
            t = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
            if t.is_floating_point():
                key = _key(name)
                self.register_buffer(key, t.float().contiguous())
                self._buffer_of[name] = key
            else:
                self._ints[name] = t.numpy()
        for n in graph.nodes:
            if n.op == "Const" and n.name not in self._buffer_of and n.name not in self._ints:
                raise UnavailableError(f"{graph.path.name}: constant {n.name!r} has no weight data")
        self._consumers: dict[str, int] = {}
        for n in graph.nodes:
            for i in n.inputs:
                self._consumers[_node_name(i)] = self._consumers.get(_node_name(i), 0) + 1
        self._plans: dict[tuple[str, ...], list] = {}

    def _plan(self, outputs: tuple[str, ...]) -> list[Node]:
        """Compute nodes needed for `outputs`, in dependency order (cached)."""
        if outputs not in self._plans:
            order, seen = [], set()
            for out in outputs:
                if out not in self.nodes:
                    raise UnavailableError(f"{self.source}: no node named {out!r}")
                stack = [(out, False)]
                while stack:
                    name, done = stack.pop()
                    if done:
                        order.append(self.nodes[name])
                        continue
                    if name in seen:
                        continue
                    seen.add(name)
                    stack.append((name, True))
                    stack.extend((_node_name(i), False) for i in reversed(self.nodes[name].inputs)
                                 if _node_name(i) not in seen)
            self._plans[outputs] = self._fuse_clamps([n for n in order if n.op not in ("Const", "Placeholder")], outputs)
        return self._plans[outputs]

    def _clamp_of(self, node: Node) -> tuple[str, float, float] | None:
        """(source, lo, hi) when the node is a clamp: Relu, Relu6, or Minimum / Maximum against a
        one-element constant; else None."""
        if node.op in ("Relu", "Relu6"):
            return _node_name(node.inputs[0]), 0.0, (6.0 if node.op == "Relu6" else math.inf)
        if node.op in ("Minimum", "Maximum") and len(node.inputs) == 2:
            a, b = (_node_name(i) for i in node.inputs)
            for src, const in ((a, b), (b, a)):
                buf = self._buffer_of.get(const)
                if buf is not None and getattr(self, buf).numel() == 1:
                    c = float(getattr(self, buf).reshape(()))
                    return (src, c, math.inf) if node.op == "Maximum" else (src, -math.inf, c)
        return None

    def _fuse_clamps(self, plan: list[Node], outputs: tuple[str, ...]) -> list:
        """Chains like Relu -> Minimum(6) -> Maximum(0) (ReLU6 as Keras writes it) become one clamp
        step (src, lo, hi) when the inner results feed nothing else: one pass instead of three."""
        steps: list = []
        clamps: dict[str, tuple[str, float, float]] = {}
        for node in plan:
            clamp = self._clamp_of(node)
            if clamp is not None:
                src, lo, hi = clamp
                inner = clamps.get(src)
                if inner is not None and self._consumers.get(src, 0) == 1 and src not in outputs \
                        and max(lo, inner[1]) <= min(hi, inner[2]):
                    steps = [st for st in steps if not (isinstance(st, tuple) and st[0] == src)]
                    src, lo, hi = inner[0], max(lo, inner[1]), min(hi, inner[2])
                clamps[node.name] = (src, lo, hi)
                steps.append((node.name, src, lo, hi))
            else:
                steps.append(node)
        return steps

    def _value(self, name: str, values: dict):
        if name in values:
            return values[name]
        if name in self._buffer_of:
            return getattr(self, self._buffer_of[name])
        return self._ints[name]

    def forward(self, x: torch.Tensor, outputs: list[str] | tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """x [B, H, W, C] (NHWC, float, the graph's own input scale) -> {output name: tensor}."""
        names = tuple(outputs or self.default_outputs)
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for step in self._plan(names):
            if isinstance(step, tuple):  # fused clamp chain
                name, src, lo, hi = step
                values[name] = self._value(src, values).clamp(None if lo == -math.inf else lo,
                                                               None if hi == math.inf else hi)
                continue
            ins = [self._value(_node_name(i), values) for i in step.inputs]
            values[step.name] = OPS[step.op](step, ins)
        return {n: self._value(n, values) for n in names}
