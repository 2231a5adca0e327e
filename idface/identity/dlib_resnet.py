"""dlib's face-recognition ResNet (`dlib.face_recognition_model_v1`) as a PyTorch module.

The network is the 29-conv-layer ResNet behind dlib_face_recognition_resnet_model_v1.dat (Davis
King, public domain), shipped by the face-recognition-models package. Its weights are read straight
from that file with the reader below -- dlib is never imported here -- converted once and cached
as safetensors under weights/cache/.

dlib's network type, written from the output down (dlib/tools/python/src/face_recognition.cpp):

    loss_metric<fc_no_bias<128, avg_pool_everything<
        ares_down<256,                          # level0      4x4 -> 2x2
        ares<256, ares<256, ares_down<256,      # level1      8x8 -> 4x4
        ares<128, ares<128, ares_down<128,      # level2    17x17 -> 8x8
        ares<64, ares<64, ares<64, ares_down<64,# level3    35x35 -> 17x17
        ares<32, ares<32, ares<32,              # level4    35x35
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>

    block<N, stride>(x) = affine(con<N,3,3,1,1>(relu(affine(con<N,3,3,stride,stride>(x)))))
    ares<N>(x)          = relu(block<N,1>(x) + x)
    ares_down<N>(x)     = relu(block<N,2>(x) + avg_pool<2,2,2,2>(x))

dlib's semantics that a plain torchvision-style port gets wrong:
- Padding: a dlib `con` with stride 1 pads nr/2; with stride 2 it does not pad. Pooling windows
  (max 3x3/2, avg 2x2/2) have no padding either. The file stores the padding of every layer and
  the port uses the stored values.
- add_prev adds tensors of different shapes: the result has the larger size in every dimension and
  the missing part of the smaller one counts as zero. ares_down<256> on 8x8 gives a 3x3 conv branch
  and a 4x4 pooled branch, so the sum is 4x4 with the conv branch zero-padded at the bottom/right;
  the 32->64 channel step adds the 32 pooled channels to the first 32 of 64.
- `affine` is batch norm folded into a per-channel scale and shift (gamma * x + beta).
- The input layer maps a uint8 pixel p to (p - channel_mean) / 256 (dlib/dnn/input.h).
- The descriptor is the raw fc output (no L2 normalisation); dlib's same-person rule is Euclidean
  distance < 0.6, a number also stored in the file's loss layer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from idface.errors import UnavailableError, WeightsNotFoundError
from idface.weights import cache_dir, dlib_model_path, sha256_file

# ---------------------------------------------------------------------------------------------
# Facts about the model (one place for each)

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"  # public domain (Davis King)
INPUT_SIZE = 150  # dlib face chip: get_face_chip(img, shape, size=150, padding=0.25)
CHIP_PADDING = 0.25
EMBEDDING_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # Euclidean; the file's loss_metric stores the same number
LICENSE_NOTE = "dlib_face_recognition_resnet_model_v1: public domain (Davis E. King, dlib.net)"

CACHE_FORMAT = "idface-dlib-resnet-v1"  # bump when the state-dict layout changes

# (channels, number of ares blocks, starts with ares_down) from the input up: level4 .. level0
STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
STEM_CHANNELS = 32


# ---------------------------------------------------------------------------------------------
# Reader for dlib's serialization (dlib/serialize.h, dlib/float_details.h, dlib/dnn/*.h)


class DlibFormatError(UnavailableError):
    """A dlib .dat file is truncated, corrupt or holds something this reader does not know."""


@dataclass
class DlibLayer:
    """One layer of a dlib network as stored: `kind` is the layer family ("con", "affine",
    "relu", "max_pool", "avg_pool", "add_prev", "fc", or "tag_or_skip" for the tag/skip wrappers,
    which store only a version number), `version` the tag dlib wrote ("con_4", "fc_2", ...),
    `attrs` the scalar settings, `tensors` the float32 arrays in dlib's layout."""

    kind: str
    version: str
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    offset: int = 0  # byte offset of the layer's record in the file


@dataclass
class DlibNetFile:
    """What read_dlib_dat found: the loss layer, the input layer, and every layer from the input
    up to the output (tags/skips included, in their place)."""

    path: Path
    loss: dict[str, Any]
    input: dict[str, Any]
    layers: list[DlibLayer]

    def summary(self) -> str:
        lines = [f"{self.path.name}: {self.loss['version']} {self.loss}", f"input: {self.input}"]
        for i, layer in enumerate(self.layers):
            shapes = {k: tuple(v.shape) for k, v in layer.tensors.items()}
            lines.append(f"{i:3d} {layer.version:12s} {layer.attrs} {shapes}")
        return "\n".join(lines)


_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class _DatReader:
    """Sequential reader over the bytes of one .dat file; every error names the file and offset."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.path = path
        self.pos = 0

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.path}: {what} at byte {self.pos} (file is corrupt or not a dlib network); "
                               "reinstall it: pip install --force-reinstall face-recognition-models")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(
                f"{self.path}: file is truncated (needed {n} bytes at byte {self.pos}, "
                f"file has {len(self.data)}); reinstall it: pip install --force-reinstall face-recognition-models"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        # one control byte: low 4 bits = number of little-endian magnitude bytes, 0x80 = negative
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def string(self, limit: int = 256) -> str:
        n = self.integer()
        if not 0 <= n <= limit:
            raise self.fail(f"implausible string length {n}")
        raw = self.take(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII layer name") from None

    def real(self) -> float:
        # dlib float_details: value = mantissa * 2**exponent (exponent 32000/1/2 = inf/-inf/nan)
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return math.ldexp(float(mantissa), exponent)

    def boolean(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"expected a bool ('0' or '1'), found 0x{byte[0]:02x}")
        return byte == b"1"

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.integer()
        if value not in allowed:
            raise self.fail(f"unsupported {what} version {value}")
        return value

    def tensor(self) -> np.ndarray:
        """dlib::tensor -> float32 array [num_samples, k, nr, nc]."""
        version = self.version((1, 2), "tensor")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = math.prod(shape)
        if version == 2:  # raw little-endian IEEE float32
            values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        else:  # every value as a float_details pair
            values = np.array([self.real() for _ in range(count)], dtype=np.float32)
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]


def _slice_alias(params: np.ndarray, shape: tuple[int, ...], offset: int, reader: _DatReader) -> np.ndarray:
    flat = params.reshape(-1)
    count = math.prod(shape)
    if offset + count > flat.size:
        raise reader.fail(f"parameter view {shape} at {offset} exceeds {flat.size} stored values")
    return flat[offset : offset + count].reshape(shape).copy()


def _read_con(r: _DatReader, version: str) -> DlibLayer:
    if version not in ("con_4", "con_5", "con_6"):
        raise r.fail(f"unsupported convolution format {version!r}")
    params = r.tensor()
    attrs: dict[str, Any] = {
        "num_filters": r.integer(),
        "nr": r.integer(),
        "nc": r.integer(),
        "stride_y": r.integer(),
        "stride_x": r.integer(),
        "padding_y": r.integer(),
        "padding_x": r.integer(),
    }
    filters = r.alias_tensor()
    biases = r.alias_tensor()
    attrs["learning_rate_multiplier"] = r.real()
    attrs["weight_decay_multiplier"] = r.real()
    attrs["bias_learning_rate_multiplier"] = r.real()
    attrs["bias_weight_decay_multiplier"] = r.real()
    attrs["use_bias"] = r.boolean() if version in ("con_5", "con_6") else True
    attrs["use_relu"] = r.boolean() if version == "con_6" else False  # relu fused into the conv
    weight = _slice_alias(params, filters, 0, r)  # [out, in, nr, nc]
    tensors = {"weight": weight}
    if attrs["use_bias"]:
        tensors["bias"] = _slice_alias(params, biases, math.prod(filters), r).reshape(-1)
    return DlibLayer("con", version, attrs, tensors)


def _read_affine(r: _DatReader, version: str) -> DlibLayer:
    if version not in ("affine_", "affine_2"):
        raise r.fail(f"unsupported affine format {version!r} (batch-norm layers are not supported)")
    params = r.tensor()
    gamma = r.alias_tensor()
    beta = r.alias_tensor()
    mode = r.integer()  # 0: per channel (CONV_MODE), 1: per element (FC_MODE)
    disabled = r.boolean() if version == "affine_2" else False
    tensors = {
        "gamma": _slice_alias(params, gamma, 0, r).reshape(-1),
        "beta": _slice_alias(params, beta, math.prod(gamma), r).reshape(-1),
    }
    return DlibLayer("affine", version, {"mode": mode, "disabled": disabled}, tensors)


def _read_pool(r: _DatReader, version: str) -> DlibLayer:
    kind = "max_pool" if version.startswith("max_pool") else "avg_pool"
    if version not in ("max_pool_2", "avg_pool_2"):
        raise r.fail(f"unsupported pooling format {version!r}")
    attrs = {
        "nr": r.integer(),  # 0 means "the whole input" (avg_pool_everything)
        "nc": r.integer(),
        "stride_y": r.integer(),
        "stride_x": r.integer(),
        "padding_y": r.integer(),
        "padding_x": r.integer(),
    }
    return DlibLayer(kind, version, attrs)


def _read_fc(r: _DatReader, version: str) -> DlibLayer:
    if version not in ("fc_2", "fc_3"):
        raise r.fail(f"unsupported fully-connected format {version!r}")
    num_outputs = r.integer()
    num_inputs = r.integer()
    params = r.tensor()
    weights = r.alias_tensor()
    biases = r.alias_tensor()
    bias_mode = r.integer()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    attrs: dict[str, Any] = {"num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": bias_mode == 0}
    attrs["learning_rate_multiplier"] = r.real()
    attrs["weight_decay_multiplier"] = r.real()
    attrs["bias_learning_rate_multiplier"] = r.real()
    attrs["bias_weight_decay_multiplier"] = r.real()
    if version == "fc_3":
        attrs["use_bias"] = r.boolean()
    # dlib computes output = input [N, num_inputs] x W [num_inputs, num_outputs]
    tensors = {"weight": _slice_alias(params, (num_inputs, num_outputs), 0, r)}
    if math.prod(weights) != num_inputs * num_outputs:
        raise r.fail(f"fc weight view {weights} does not match {num_inputs}x{num_outputs}")
    if attrs["has_bias"]:
        tensors["bias"] = _slice_alias(params, biases, num_inputs * num_outputs, r).reshape(-1)
    return DlibLayer("fc", version, attrs, tensors)


def _read_no_params(kind: str):
    def read(r: _DatReader, version: str) -> DlibLayer:
        return DlibLayer(kind, version)

    return read


# layer name prefix -> reader of the rest of its record (each layer writes its name first)
_LAYER_READERS = {
    "con_": _read_con,
    "affine_": _read_affine,
    "max_pool_": _read_pool,
    "avg_pool_": _read_pool,
    "fc_": _read_fc,
    "relu_": _read_no_params("relu"),
    "add_prev_": _read_no_params("add_prev"),
}


def _read_layer_details(r: _DatReader) -> DlibLayer:
    offset = r.pos
    name = r.string()
    for prefix, reader in _LAYER_READERS.items():
        if name.startswith(prefix) and (name == prefix or name[len(prefix) :].isdigit()):
            layer = reader(r, name)
            layer.offset = offset
            return layer
    r.pos = offset
    raise r.fail(f"unknown layer type {name!r}")


def read_dlib_dat(path: str | os.PathLike) -> DlibNetFile:
    """Parse a dlib DNN file written by `serialize(net)` for a loss_metric network whose input is
    input_rgb_image_sized (the face-recognition ResNet). Returns the loss settings, the input
    layer (channel means, size) and the layers from input to output with float32 tensors.

    File layout (dlib/dnn/core.h): add_loss_layer writes its version, the loss details, then its
    subnetwork. Every wrapper writes its version and then its subnetwork first, so the file holds
    the wrapper versions from the output down (add_layer: 2, add_tag_layer/add_skip_layer: 1, the
    add_layer right above the input: 3), then the input layer, then -- while the recursion
    unwinds -- each add_layer's details and bookkeeping from the input up. Tags and skips store
    nothing but their version, so which of the two a 1 is comes from the network type."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WeightsNotFoundError(f"cannot read dlib model {path}: {err.strerror or err}") from None
    r = _DatReader(data, path)
    if not data:
        raise DlibFormatError(f"{path}: file is empty; reinstall face-recognition-models")

    r.version((1,), "add_loss_layer")
    loss_name = r.string()
    if loss_name != "loss_metric_2":
        r.pos = 0
        raise r.fail(f"expected a loss_metric_2 network, found {loss_name!r}")
    loss = {"version": loss_name, "margin": r.real(), "distance_threshold": r.real()}

    # wrapper versions, output -> input, until the input layer's name
    wrappers: list[int] = []
    while True:
        start = r.pos
        version = r.integer()
        if version == 3:  # add_layer<LAYER, INPUT_LAYER>: the input layer follows
            break
        if version not in (1, 2):
            r.pos = start
            raise r.fail(f"unexpected layer wrapper version {version}")
        wrappers.append(version)
        if len(wrappers) > 10_000:
            raise r.fail("no input layer found")

    input_name = r.string()
    if input_name != "input_rgb_image_sized":
        raise r.fail(f"expected input_rgb_image_sized, found {input_name!r}")
    input_info = {
        "version": input_name,
        "avg_red": r.real(),
        "avg_green": r.real(),
        "avg_blue": r.real(),
        "nr": r.integer(),
        "nc": r.integer(),
    }

    def bookkeeping(first: bool) -> None:
        # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
        for _ in range(3):
            r.boolean()
        r.tensor()  # x_grad (empty in a cleaned network)
        r.tensor()  # cached_output
        if first:  # add_layer<.., INPUT_LAYER> v3: grad_final, sample_expansion_factor
            r.tensor()
            r.integer()
        else:  # add_layer v2: params_grad
            r.tensor()

    layers = [_read_layer_details(r)]
    bookkeeping(first=True)
    for version in reversed(wrappers):
        if version == 1:
            layers.append(DlibLayer("tag_or_skip", "1", offset=r.pos))
        else:
            layers.append(_read_layer_details(r))
            bookkeeping(first=False)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    return DlibNetFile(path=path, loss=loss, input=input_info, layers=layers)


# ---------------------------------------------------------------------------------------------
# The network


class ChannelAffine(nn.Module):
    """dlib `affine` in CONV_MODE: batch norm frozen into y = scale[c] * x + shift[c]."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W]
        return torch.addcmul(self.shift[:, None, None], x, self.scale[:, None, None])


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib add_prev: sum of two [B, C, H, W] tensors of possibly different C/H/W; the result has
    the larger size in each dimension and the smaller tensor counts as zero where it ends."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class DlibResidualBlock(nn.Module):
    """dlib `ares` (downsample=False) or `ares_down` (downsample=True):
    relu(affine(conv(relu(affine(conv_strided(x))))) + shortcut(x)), shortcut = x or 2x2 avg pool."""

    def __init__(self, in_channels: int, channels: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        # dlib pads a 3x3 con by 1 only at stride 1 (checked against the file on load)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=0 if downsample else 1)
        self.affine1 = ChannelAffine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = ChannelAffine(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Cin, H, W] -> [B, C, H', W']
        y = F.relu(self.affine1(self.conv1(x)))
        y = self.affine2(self.conv2(y))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(y, shortcut))


class DlibResNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1 in PyTorch.

    forward(chips [B, 3, 150, 150] RGB in [0, 1], aligned like dlib.get_face_chip(img, shape, 150,
    0.25)) -> descriptors [B, 128]; differentiable in the chips. Same person: Euclidean distance
    < SAME_PERSON_DISTANCE (0.6)."""

    input_size = INPUT_SIZE
    embedding_dim = EMBEDDING_DIM
    same_person_distance = SAME_PERSON_DISTANCE

    def __init__(self):
        super().__init__()
        # dlib's input layer: (pixel - channel mean) / 256, pixels in 0..255
        self.register_buffer("pixel_mean", torch.zeros(3))
        self.conv = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=0)
        self.affine = ChannelAffine(STEM_CHANNELS)
        blocks = []
        in_channels = STEM_CHANNELS
        for channels, count, starts_down in STAGES:
            for i in range(count):
                blocks.append(DlibResidualBlock(in_channels, channels, downsample=starts_down and i == 0))
                in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM, bias=False)

    def normalize(self, chips: torch.Tensor) -> torch.Tensor:
        """[B, 3, 150, 150] RGB in [0, 1] -> dlib's network input."""
        return (chips * 255.0 - self.pixel_mean[:, None, None]) / 256.0

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"DlibResNet expects chips [B, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {list(chips.shape)}")
        x = self.normalize(chips.to(self.pixel_mean.dtype))  # [B, 3, 150, 150]
        x = F.relu(self.affine(self.conv(x)))  # [B, 32, 72, 72]
        x = F.max_pool2d(x, 3, 2)  # [B, 32, 35, 35]
        for block in self.blocks:  # 35 -> 17 -> 8 -> 4 -> 2
            x = block(x)
        x = x.mean(dim=(2, 3))  # avg_pool_everything: [B, 256]
        return self.fc(x)  # [B, 128]


# ---------------------------------------------------------------------------------------------
# .dat -> state dict


def state_dict_from_dat(net: DlibNetFile) -> dict[str, torch.Tensor]:
    """Walk the parsed file along dlib's network type and return DlibResNet's state dict.
    Raises DlibFormatError when the file's layers or shapes differ from that network."""
    layers = net.layers
    pos = 0
    out: dict[str, torch.Tensor] = {}

    def fail(msg: str) -> DlibFormatError:
        where = f"layer {pos} ({layers[pos].version}) at byte {layers[pos].offset}" if pos < len(layers) else "end"
        return DlibFormatError(f"{net.path}: not dlib's face-recognition ResNet: {msg} ({where})")

    def expect(kind: str, **attrs: Any) -> DlibLayer:
        nonlocal pos
        if pos >= len(layers) or layers[pos].kind != kind:
            found = layers[pos].kind if pos < len(layers) else "nothing"
            raise fail(f"expected {kind}, found {found}")
        layer = layers[pos]
        for key, value in attrs.items():
            if layer.attrs.get(key) != value:
                raise fail(f"{kind}.{key} is {layer.attrs.get(key)!r}, expected {value!r}")
        pos += 1
        return layer

    def conv(prefix: str, in_ch: int, out_ch: int, size: int, stride: int, padding: int) -> None:
        layer = expect("con", num_filters=out_ch, nr=size, nc=size, stride_y=stride, stride_x=stride,
                       padding_y=padding, padding_x=padding, use_bias=True, use_relu=False)
        weight = layer.tensors["weight"]
        if weight.shape != (out_ch, in_ch, size, size):
            raise fail(f"conv weight {weight.shape}, expected {(out_ch, in_ch, size, size)}")
        out[f"{prefix}.weight"] = torch.from_numpy(weight)
        out[f"{prefix}.bias"] = torch.from_numpy(layer.tensors["bias"])

    def affine(prefix: str, channels: int) -> None:
        layer = expect("affine", mode=0, disabled=False)
        if layer.tensors["gamma"].shape != (channels,):
            raise fail(f"affine over {layer.tensors['gamma'].shape}, expected ({channels},)")
        out[f"{prefix}.scale"] = torch.from_numpy(layer.tensors["gamma"])
        out[f"{prefix}.shift"] = torch.from_numpy(layer.tensors["beta"])

    if (net.input["nr"], net.input["nc"]) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"{net.path}: input size {net.input['nr']}x{net.input['nc']}, expected {INPUT_SIZE}")
    out["pixel_mean"] = torch.tensor(
        [net.input["avg_red"], net.input["avg_green"], net.input["avg_blue"]], dtype=torch.float32
    )
    conv("conv", 3, STEM_CHANNELS, 7, 2, 0)
    affine("affine", STEM_CHANNELS)
    expect("relu")
    expect("max_pool", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)

    index = 0
    in_ch = STEM_CHANNELS
    for channels, count, starts_down in STAGES:
        for i in range(count):
            down = starts_down and i == 0
            prefix = f"blocks.{index}"
            expect("tag_or_skip")  # tag1
            conv(f"{prefix}.conv1", in_ch, channels, 3, 2 if down else 1, 0 if down else 1)
            affine(f"{prefix}.affine1", channels)
            expect("relu")
            conv(f"{prefix}.conv2", channels, channels, 3, 1, 1)
            affine(f"{prefix}.affine2", channels)
            if down:
                expect("tag_or_skip")  # tag2
                expect("tag_or_skip")  # skip1
                expect("avg_pool", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
            expect("add_prev")
            expect("relu")
            index += 1
            in_ch = channels

    expect("avg_pool", nr=0, nc=0, stride_y=1, stride_x=1, padding_y=0, padding_x=0)
    fc = expect("fc", num_outputs=EMBEDDING_DIM, num_inputs=in_ch, has_bias=False)
    out["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.tensors["weight"].T))  # [128, 256]
    if pos != len(layers):
        raise fail(f"{len(layers) - pos} layers left over after the fc layer")
    return out


def convert_dlib_resnet(dat_path: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the .dat and return (state dict, metadata) for DlibResNet."""
    path = Path(dat_path) if dat_path is not None else dlib_model_path(RESNET_FILE)
    net = read_dlib_dat(path)
    state = state_dict_from_dat(net)
    metadata = {
        "format": CACHE_FORMAT,
        "source_file": path.name,
        "source_sha256": sha256_file(path),
        "loss_margin": repr(net.loss["margin"]),
        "same_person_distance": repr(net.loss["distance_threshold"]),
        "license": LICENSE_NOTE,
    }
    return state, metadata


# ---------------------------------------------------------------------------------------------
# Cached loading (the cache folder is idface.weights.cache_dir)


def cached_weights_path(dat_path: Path, folder: Path) -> Path:
    """Cache file name keyed by the source's size and mtime (a reinstalled or replaced .dat gets a
    new cache file); the source's sha256 is kept in the file's metadata for provenance."""
    stat = dat_path.stat()
    return folder / f"{dat_path.stem}.{stat.st_size}-{stat.st_mtime_ns}.safetensors"


def load_dlib_resnet(
    device: str | torch.device = "cpu",
    *,
    dtype: torch.dtype = torch.float32,
    cache: str | os.PathLike | None = None,
    dat_path: str | os.PathLike | None = None,
) -> DlibResNet:
    """DlibResNet in eval mode with frozen parameters (gradients still flow to the input).

    First use converts face_recognition_models' .dat (or `dat_path`) and writes
    <cache>/dlib_face_recognition_resnet_model_v1.<size>-<mtime>.safetensors; later calls load
    that file. `cache` defaults to $IDFACE_CACHE_DIR or weights/cache/."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = Path(dat_path) if dat_path is not None else dlib_model_path(RESNET_FILE)
    if not source.is_file():
        raise WeightsNotFoundError(f"dlib ResNet weights not found: {source}")
    folder = cache_dir(cache)
    cached = cached_weights_path(source, folder)

    state: dict[str, torch.Tensor] | None = None
    if cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") == CACHE_FORMAT and meta.get("source_file") == source.name:
                    state = {key: fh.get_tensor(key) for key in fh.keys()}
        except Exception:  # unreadable cache: fall back to converting again
            state = None
    if state is None:
        state, metadata = convert_dlib_resnet(source)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_file(state, str(tmp), metadata=metadata)
            os.replace(tmp, cached)  # atomic: parallel loaders never see half a file
        except OSError:  # read-only or full disk: run from the converted weights without caching
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # the folder itself is unusable (e.g. a file where it should be)
                pass

    with torch.device("meta"):  # no random init of 5.6M weights that are overwritten anyway
        model = DlibResNet()
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's comparison: Euclidean distance between descriptors [..., 128]."""
    return torch.linalg.vector_norm(a - b, dim=-1)


def chips_from_uint8(chips: np.ndarray) -> torch.Tensor:
    """uint8 chips [B, 150, 150, 3] or [150, 150, 3] (what dlib.get_face_chip returns) ->
    float [B, 3, 150, 150] in [0, 1]."""
    arr = np.asarray(chips)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB chips [B, H, W, 3], got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


__all__ = [
    "CHIP_PADDING",
    "EMBEDDING_DIM",
    "INPUT_SIZE",
    "RESNET_FILE",
    "SAME_PERSON_DISTANCE",
    "DlibFormatError",
    "DlibLayer",
    "DlibNetFile",
    "DlibResNet",
    "chips_from_uint8",
    "convert_dlib_resnet",
    "descriptor_distance",
    "load_dlib_resnet",
    "read_dlib_dat",
]
