"""Every size of the networks in one dataclass, and the named presets.

`ModelConfig` is what a checkpoint's config.json holds (flat JSON, tuples as lists). The
`paper-256` preset has the published CA2SIS / Tarollo et al. sizes (shared/design/method.md):
a 31M-parameter generator (mask embedder included), an 18M-parameter style encoder and a
context of 19 class codes + 1 identity token of width 5 x 256 = 1280: [B, 20, 1280].

Adding a preset: write a function returning a ModelConfig and register it in PRESETS, e.g.
    PRESETS["demo"] = lambda: replace(paper_256(), name="demo", image_size=128, ...)
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from idface.errors import InputError
from idface.labels import NUM_CLASSES


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper-256"

    # data
    num_classes: int = NUM_CLASSES           # 19 CelebAMask-HQ classes (idface.labels)
    image_size: int = 256                    # generator output and style-encoder input, square

    # style encoder: image + one-hot mask -> one code per class, code_dim = style_dim * style_scales
    style_dim: int = 256                     # width of one scale's part of a class code
    style_encoder_channels: tuple[int, ...] = (64, 128, 256, 512, 512)  # stem, then one per /2
    style_scales: int = 5                    # decoder scales pooled into the code (coarsest first)

    # identity token: recognizer embedding -> one more context token of width code_dim
    identity_dim: int = 512                  # 512 ArcFace, 128 dlib ResNet
    identity_recognizer: str = "arcface"     # name in idface.identity.registry

    # mask embedder: non-background mask channels resized to mask_embed_size^2, one shared linear
    # layer to base_resolution^2 per class, 1x1 conv to generator_channels[0]
    mask_embed_size: int = 128

    # generator: one stage per resolution base_resolution * 2**i; stage i maps
    # generator_channels[i] -> generator_channels[i + 1] (residual block, then transformer block)
    generator_channels: tuple[int, ...] = (512, 256, 128, 64, 32, 32)
    attention_heads: tuple[int, ...] = (8, 8, 8, 8, 4)
    attention_head_dim: tuple[int, ...] = (64, 64, 64, 64, 32)
    self_attention: tuple[bool, ...] = (True, True, True, False, False)
    ff_mult: int = 4                         # GEGLU hidden width = ff_mult * heads * head_dim
    norm_groups: int = 32                    # GroupNorm groups (reduced to divide small widths)
    # identity path: every transformer block's output is modulated by its own zero-initialised
    # Linear(identity token) -> (scale, shift) per channel (FiLM). Without it the token is one of
    # T cross-attention tokens and a generator trained on own-token reconstruction learns to
    # ignore it (1-2 % of the attention); False keeps the published architecture and old checkpoints
    identity_film: bool = False

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (data, steps, ...)

    def __post_init__(self) -> None:
        stages = self.num_stages
        for fname in ("attention_heads", "attention_head_dim", "self_attention"):
            if len(getattr(self, fname)) != stages:
                raise InputError(
                    f"model config {self.name!r}: {fname} has {len(getattr(self, fname))} entries, "
                    f"expected one per generator stage ({stages})"
                )
        if self.image_size % (2 ** (stages - 1)):
            raise InputError(
                f"model config {self.name!r}: image_size {self.image_size} is not divisible by "
                f"2**{stages - 1} (one upsampling per stage after the first)"
            )
        if self.style_scales > len(self.style_encoder_channels):
            raise InputError(
                f"model config {self.name!r}: style_scales {self.style_scales} exceeds the "
                f"{len(self.style_encoder_channels)} style-encoder resolutions"
            )
        if self.image_size % (2 ** (len(self.style_encoder_channels) - 1)):
            raise InputError(
                f"model config {self.name!r}: image_size {self.image_size} is not divisible by the "
                f"style encoder's total downsampling 2**{len(self.style_encoder_channels) - 1}"
            )

    # ---- derived sizes (not stored) ----
    @property
    def num_stages(self) -> int:
        return len(self.generator_channels) - 1

    @property
    def base_resolution(self) -> int:
        return self.image_size // 2 ** (self.num_stages - 1)

    @property
    def code_dim(self) -> int:
        return self.style_dim * self.style_scales

    @property
    def num_tokens(self) -> int:
        return self.num_classes + 1  # class codes + identity token

    # ---- JSON ----
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Strict: an unknown key is an error (a checkpoint made by other code); missing keys take
        the defaults above."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"model config holds unknown field(s) {', '.join(unknown)}")
        values = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = tuple(value)
            values[key] = value
        return cls(**values)


def paper_256() -> ModelConfig:
    return ModelConfig()


def tiny() -> ModelConfig:
    """64x64, four stages, small widths: a forward pass takes milliseconds on a CPU (tests)."""
    return ModelConfig(
        name="tiny",
        image_size=64,
        style_dim=16,
        style_encoder_channels=(16, 32, 32, 64),
        style_scales=3,
        identity_dim=128,
        identity_recognizer="dlib-resnet",
        mask_embed_size=32,
        generator_channels=(64, 48, 32, 16, 16),
        attention_heads=(2, 2, 2, 2),
        attention_head_dim=(16, 16, 16, 8),
        self_attention=(True, True, False, False),
        ff_mult=2,
        norm_groups=8,
        identity_film=True,
    )


def demo() -> ModelConfig:
    """The bundled demo checkpoint (weights/idface-demo, configs/demo.json): 128x128, dlib ResNet
    identity (128-d), about 1.6M parameters, sized to train in about an hour on two CPU cores."""
    return ModelConfig(
        name="demo",
        image_size=128,
        style_dim=32,
        style_encoder_channels=(16, 32, 64, 128),
        style_scales=3,
        identity_dim=128,
        identity_recognizer="dlib-resnet",
        mask_embed_size=32,
        generator_channels=(256, 128, 64, 32, 16),
        attention_heads=(4, 2, 2, 1),
        attention_head_dim=(32, 32, 16, 16),
        self_attention=(True, False, False, False),
        ff_mult=2,
        norm_groups=8,
        identity_film=True,
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "paper-256": paper_256,
    "tiny": tiny,
    "demo": demo,
}


def get_config(name_or_config: str | ModelConfig | dict, **overrides: Any) -> ModelConfig:
    """A preset by name, a ModelConfig, or a config dict; keyword overrides replace fields."""
    if isinstance(name_or_config, ModelConfig):
        config = name_or_config
    elif isinstance(name_or_config, dict):
        config = ModelConfig.from_dict(name_or_config)
    elif name_or_config in PRESETS:
        config = PRESETS[name_or_config]()
    else:
        raise InputError(
            f"unknown model preset {name_or_config!r}; known presets: {', '.join(PRESETS)}"
        )
    return replace(config, **overrides) if overrides else config
