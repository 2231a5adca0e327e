"""Two-scale patch discriminator on [one-hot mask, RGB] with spectral norm (SEAN/pix2pixHD style).

Each scale is a fully convolutional patch classifier: 4x4 convolutions, stride 2 while the
resolution halves, channels doubling up to a cap, spectral norm on every convolution,
instance norm after all but the first, LeakyReLU(0.2), and a final 1-channel convolution that
scores overlapping patches. The second scale sees the inputs average-pooled by 2. Every scale
returns its intermediate activations too, for the feature-matching loss.

    disc = MultiScaleDiscriminator(DiscriminatorConfig.preset("paper-256"))
    outputs = disc(onehot [B, 19, 256, 256], rgb [B, 3, 256, 256])
    outputs[s][-1]   # patch logits of scale s, [B, 1, h, w]
    outputs[s][:-1]  # intermediate features of scale s
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from idface.labels import NUM_CLASSES


@dataclass(frozen=True)
class DiscriminatorConfig:
    num_classes: int = NUM_CLASSES  # one-hot mask channels
    image_channels: int = 3
    base_channels: int = 64  # channels of the first layer (SEAN: 64)
    max_channels: int = 512  # channel cap
    num_layers: int = 4  # conv layers before the 1-channel output (SEAN: n_layers_D = 4)
    num_scales: int = 2  # patch discriminators at full, 1/2, 1/4 ... resolution
    instance_norm: bool = True

    @staticmethod
    def preset(name: str) -> "DiscriminatorConfig":
        presets = {
            # SEAN / CA2SIS sizes: ndf 64, 4 layers, 2 scales, spectral instance norm.
            "paper-256": DiscriminatorConfig(),
            # CPU tests and the bundled demo: a quarter of the channels, one fewer layer.
            "tiny": DiscriminatorConfig(base_channels=16, max_channels=128, num_layers=3),
            "demo": DiscriminatorConfig(base_channels=32, max_channels=256, num_layers=3),
        }
        if name not in presets:
            raise KeyError(f"unknown discriminator preset {name!r}; known: {', '.join(presets)}")
        return presets[name]

    def with_overrides(self, **overrides) -> "DiscriminatorConfig":
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


class PatchDiscriminator(nn.Module):
    """One scale: returns [feature_1, ..., feature_L, logits [B, 1, h, w]]."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        in_ch = cfg.num_classes + cfg.image_channels
        layers: list[nn.Module] = []
        ch = cfg.base_channels
        # First layer: no normalisation.
        layers.append(nn.Sequential(
            spectral_norm(nn.Conv2d(in_ch, ch, 4, stride=2, padding=2)),
            nn.LeakyReLU(0.2),
        ))
        for i in range(1, cfg.num_layers):
            out_ch = min(ch * 2, cfg.max_channels)
            stride = 1 if i == cfg.num_layers - 1 else 2  # the last feature layer keeps resolution
            norm = nn.InstanceNorm2d(out_ch, affine=False) if cfg.instance_norm else nn.Identity()
            layers.append(nn.Sequential(
                spectral_norm(nn.Conv2d(ch, out_ch, 4, stride=stride, padding=2)),
                norm,
                nn.LeakyReLU(0.2),
            ))
            ch = out_ch
        self.features = nn.ModuleList(layers)
        self.to_logits = spectral_norm(nn.Conv2d(ch, 1, 4, stride=1, padding=2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.features:
            x = layer(x)
            outputs.append(x)
        outputs.append(self.to_logits(x))
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """num_scales patch discriminators; scale s sees the input average-pooled s times."""

    def __init__(self, cfg: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = cfg or DiscriminatorConfig()
        self.scales = nn.ModuleList(PatchDiscriminator(self.config) for _ in range(self.config.num_scales))

    def forward(self, onehot: torch.Tensor, rgb: torch.Tensor) -> list[list[torch.Tensor]]:
        # onehot [B, C, H, W] in {0,1}; rgb [B, 3, H, W] in [-1, 1]
        x = torch.cat([onehot.to(rgb.dtype), rgb], dim=1)
        results = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            results.append(scale(x))
        return results
