"""Style encoder (image + mask -> one code per class) and the identity token projection.

Style encoder: a U-Net over [RGB, one-hot mask]. At each of the `style_scales` coarsest decoder
resolutions, every class's features are averaged over that class's region (the one-hot mask
area-resized to that resolution) and mapped by the class's own linear layer to style_dim, tanh.
The scales are concatenated: codes [B, K, style_dim * style_scales] = [B, 19, 1280] at paper size.
Averaging commutes with a linear map, so pooling first and projecting after costs
O(K * channels) instead of a per-pixel head over K * channels feature maps.

A class absent from the mask has no region to pool: its code is a learned per-class default
(`default_codes`, zero at init), and `presence` [B, K] says which codes came from the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from idface.errors import InputError
from idface.model.config import ModelConfig


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= groups that divides channels."""
    return nn.GroupNorm(math.gcd(channels, groups), channels)


class ConvNormAct(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, groups: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
            group_norm(out_ch, groups),
            nn.SiLU(),
        )


class StyleEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        k, ch, groups = config.num_classes, config.style_encoder_channels, config.norm_groups
        self.num_classes = k
        self.style_scales = config.style_scales
        self.stem = ConvNormAct(3 + k, ch[0], groups)                      # full resolution
        self.down = nn.ModuleList(
            ConvNormAct(ch[i - 1], ch[i], groups, stride=2) for i in range(1, len(ch))
        )
        # decoder level i (resolution of encoder level i) fuses the upsampled level i+1 and skip i;
        # only the levels that feed a code scale are built (the bottleneck is the coarsest scale)
        first_level = len(ch) - config.style_scales
        self.up = nn.ModuleDict({
            str(i): ConvNormAct(ch[i + 1] + ch[i], ch[i], groups)
            for i in range(first_level, len(ch) - 1)
        })
        # one linear map per class and scale: pooled [B, K, C_s] -> [B, K, style_dim]
        pooled_widths = [ch[len(ch) - 1 - s] for s in range(config.style_scales)]  # coarsest first
        self.code_weight = nn.ParameterList(
            nn.Parameter(torch.randn(k, c, config.style_dim) / math.sqrt(c)) for c in pooled_widths
        )
        self.code_bias = nn.ParameterList(
            nn.Parameter(torch.zeros(k, config.style_dim)) for _ in pooled_widths
        )
        self.default_codes = nn.Parameter(torch.zeros(k, config.code_dim))  # for absent classes

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W] in [-1, 1], mask [B, K, H, W] one-hot ->
        (codes [B, K, code_dim], presence [B, K] bool)."""
        skips = [self.stem(torch.cat([image, mask], 1))]
        for block in self.down:
            skips.append(block(skips[-1]))
        # decoder, coarsest first; the bottleneck itself is the coarsest scale
        features = [skips[-1]]
        x = skips[-1]
        for i in sorted((int(k) for k in self.up), reverse=True):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.up[str(i)](torch.cat([x, skips[i]], 1))
            features.append(x)

        codes = []
        for s in range(self.style_scales):
            feat = features[s]                                          # [B, C, h, w]
            b, c, h, w = feat.shape
            area = F.adaptive_avg_pool2d(mask, (h, w)).flatten(2)       # [B, K, h*w]
            summed = torch.bmm(area, feat.flatten(2).transpose(1, 2))   # [B, K, C]
            pooled = summed / area.sum(-1, keepdim=True).clamp_min(1e-6)
            codes.append(torch.tanh(torch.einsum("bkc,kcd->bkd", pooled, self.code_weight[s])
                                    + self.code_bias[s]))
        codes = torch.cat(codes, -1)                                    # [B, K, code_dim]
        presence = mask.flatten(2).sum(-1) > 0                          # [B, K]
        codes = torch.where(presence[..., None], codes, self.default_codes.to(codes.dtype))
        return codes, presence


class IdentityProjection(nn.Module):
    """Face-recognition embedding [B, identity_dim] -> identity token [B, 1, code_dim].

    Embeddings are L2-normalised first (recognizers differ in scale; their scores are cosines or
    distances of directions). Rows without an embedding get the learned `null_token`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.identity_dim = config.identity_dim
        self.mlp = nn.Sequential(
            nn.Linear(config.identity_dim, config.code_dim),
            nn.SiLU(),
            nn.Linear(config.code_dim, config.code_dim),
        )
        self.null_token = nn.Parameter(torch.zeros(config.code_dim))

    def forward(
        self, embedding: torch.Tensor | None, present: torch.Tensor | None = None, batch: int = 1
    ) -> torch.Tensor:
        """embedding [B, D] or None (-> null token for `batch` rows); present [B] bool marks the
        rows whose embedding is real (others get the null token, e.g. identity dropout)."""
        null = self.null_token[None, None]                              # [1, 1, code_dim]
        if embedding is None:
            return null.expand(batch, 1, -1)
        if embedding.shape[-1] != self.identity_dim:
            raise InputError(
                f"identity embedding has {embedding.shape[-1]} dims; this model expects "
                f"{self.identity_dim}"
            )
        token = self.mlp(F.normalize(embedding, dim=-1))[:, None]        # [B, 1, code_dim]
        if present is not None:
            token = torch.where(present[:, None, None], token, null.to(token.dtype))
        return token
