"""Mask embedder + generator: residual blocks and transformer blocks whose cross-attention reads
the 20 context tokens (19 class codes + 1 identity token).

    mask one-hot [B, K, H, W]
      -> MaskEmbedder: classes 1..K-1 area-resized to S x S, one shared Linear(S*S -> r*r) per
         class, 1x1 conv                                     -> [B, C0, r, r]   (r = 16 at 256^2)
      -> stage i = 0..n-1 (resolution r * 2**i):
           ResBlock  (GroupNorm, SiLU, [nearest x2 if i > 0], conv3x3, GroupNorm, SiLU, conv3x3)
           TransformerBlock over the h*w pixels as tokens:
               GroupNorm, Linear C -> inner (= heads * head_dim)
               [+ self-attention (scaled_dot_product_attention, no h*w x h*w matrix)]
               + cross-attention: queries = pixels, keys/values = context [B, 20, code_dim]
               + GEGLU feed-forward
               Linear inner -> C, zero-initialised, residual
           [identity_film: x * (1 + scale) + shift, (scale, shift) = Linear(identity token),
            zero-initialised: a path by which the identity token reaches every stage directly,
            not only through its 1/20 share of the cross-attention]
      -> GroupNorm, SiLU, 1x1 conv to RGB, tanh              -> [B, 3, H, W] in [-1, 1]

Cross-attention over only T = 20 tokens is folded exactly (same algebra, different bracketing):
    logits_h = (x W_q,h^T)(K_h^T) / sqrt(d) = x (W_q,h^T K_h^T / sqrt(d))   -> x @ query_key
    out      = sum_h P_h V_h W_o,h^T + b_o   = [P_1 .. P_H] @ value_out       + b_o
`fold_context` builds query_key [B, inner, H*T] and value_out [B, H*T, inner] once per context;
a mask edit with unchanged style and identity reuses them (ContextKV), and per pixel the layer
costs 2 * inner * H*T multiply-adds instead of 2 * inner^2 (+ the K/V projections).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from idface.model.config import ModelConfig
from idface.model.folding import FoldedBlock, fold_block, run_folded
from idface.model.style_encoder import group_norm


class ContextKV(NamedTuple):
    """One cross-attention layer's context, folded with its query and output projections."""

    query_key: torch.Tensor   # [B, inner, heads * T]  W_q^T K^T / sqrt(head_dim), per head
    value_out: torch.Tensor   # [B, heads * T, inner]  V_h W_o,h^T, per head
    film: torch.Tensor | None = None   # [B, 2 * C] identity modulation (scale | shift), or None

    def to(self, dtype: torch.dtype) -> "ContextKV":
        return ContextKV(*(None if t is None else t.to(dtype) for t in self))


def to_dtype(blocks: "list[FoldedBlock | ContextKV]", dtype: torch.dtype) -> "list[FoldedBlock | ContextKV]":
    """Generator.fold's blocks rounded once to `dtype` (bfloat16 for a bfloat16 generator)."""
    return [block.to(dtype) for block in blocks]


@dataclass
class LayerAttention:
    """Cross-attention of one layer, averaged over heads."""

    stage: int
    logits: torch.Tensor      # [B, T, h, w] pre-softmax (for the attention loss)
    probs: torch.Tensor       # [B, T, h, w] probabilities, sum to 1 over T (for display)


class MaskEmbedder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.size = config.mask_embed_size
        self.base = config.base_resolution
        self.linear = nn.Linear(self.size * self.size, self.base * self.base)  # shared by classes
        self.conv = nn.Conv2d(config.num_classes - 1, config.generator_channels[0], 1)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        b, k = mask.shape[:2]
        m = F.interpolate(mask[:, 1:], size=(self.size, self.size), mode="area")  # no background
        e = self.linear(m.flatten(2)).view(b, k - 1, self.base, self.base)     # [B, K-1, r, r]
        return self.conv(e)                                                     # [B, C0, r, r]


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, groups: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch, groups)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._up(F.silu(self.norm1(x))))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(self._up(x)) + h


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.to_qkv(x))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv [B, N, 3 * inner] (already projected) -> attention output [B, N, dim]."""
        b, n, _ = qkv.shape
        qkv = qkv.view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.contiguous()                                       # 3 x [B, heads, N, d]
        out = F.scaled_dot_product_attention(q, k, v)                   # fused: no N x N matrix
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def fold_context(self, context: torch.Tensor) -> ContextKV:
        """context [B, T, context_dim] -> ContextKV (see the module docstring)."""
        b, t, _ = context.shape
        h, d = self.heads, self.head_dim
        k = self.to_k(context).view(b, t, h, d)
        v = self.to_v(context).view(b, t, h, d)
        w_q = self.to_q.weight.view(h, d, -1)                            # [h, d, dim]
        w_o = self.to_out.weight.view(-1, h, d)                          # [dim, h, d]
        query_key = torch.einsum("hdi,bthd->biht", w_q, k).reshape(b, -1, h * t) * d**-0.5
        value_out = torch.einsum("bthd,ohd->bhto", v, w_o).reshape(b, h * t, -1)
        return ContextKV(query_key, value_out)

    def forward(self, x: torch.Tensor, kv: ContextKV) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, dim] -> (out [B, N, dim], logits [B, N, heads, T])."""
        b, n, _ = x.shape
        logits = torch.matmul(x, kv.query_key).view(b, n, self.heads, -1)   # [B, N, heads, T]
        probs = logits.softmax(-1)
        out = torch.matmul(probs.view(b, n, -1), kv.value_out) + self.to_out.bias
        return out, logits


class GEGLU(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        if torch.is_grad_enabled():
            return self.out(value * F.gelu(gate))
        return self.out(F.gelu(gate).mul_(value))      # same numbers, one buffer fewer


class TransformerBlock(nn.Module):
    # Tokens per chunk for the feed-forward without autograd: keeps the [chunk, 2 * mult * inner]
    # GEGLU activations cache-sized; the result is the same, row by row.
    ff_chunk = 2048

    def __init__(self, channels: int, context_dim: int, heads: int, head_dim: int,
                 self_attention: bool, ff_mult: int, groups: int, identity_film: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.norm = group_norm(channels, groups)
        self.proj_in = nn.Linear(channels, inner)
        if self_attention:
            self.norm_self = nn.LayerNorm(inner)
            self.self_attn = SelfAttention(inner, heads, head_dim)
        else:
            self.self_attn = None
        self.norm_cross = nn.LayerNorm(inner)
        self.cross_attn = CrossAttention(inner, context_dim, heads, head_dim)
        self.norm_ff = nn.LayerNorm(inner)
        self.ff = GEGLU(inner, ff_mult)
        self.proj_out = nn.Linear(inner, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.identity_film = nn.Linear(context_dim, 2 * channels) if identity_film else None
        if self.identity_film is not None:    # starts as the identity map: x * 1 + 0
            nn.init.zeros_(self.identity_film.weight)
            nn.init.zeros_(self.identity_film.bias)

    def fold_context(self, context: torch.Tensor) -> ContextKV:
        """context [B, T, code_dim] (identity token last) -> this block's ContextKV."""
        kv = self.cross_attn.fold_context(context)
        if self.identity_film is None:
            return kv
        return kv._replace(film=self.identity_film(context[:, -1]))           # [B, 2C]

    @staticmethod
    def modulate(x: torch.Tensor, film: torch.Tensor | None) -> torch.Tensor:
        """x [B, C, h, w] * (1 + scale) + shift, film [B, 2C] = [scale | shift] (None: x)."""
        if film is None:
            return x
        scale, shift = film.to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(shift, x, 1 + scale)

    def _feed_forward(self, t: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return t + self.ff(self.norm_ff(t))
        for i in range(0, t.shape[1], self.ff_chunk):     # t is this block's own buffer
            part = t[:, i:i + self.ff_chunk]
            part += self.ff(self.norm_ff(part))
        return t

    def forward(self, x: torch.Tensor, kv: ContextKV) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, h, w] -> (x' [B, C, h, w], cross-attention logits [B, h*w, heads, T])."""
        b, c, h, w = x.shape
        t = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)       # a view if channels_last
        t = self.proj_in(t)                                              # [B, N, inner]
        if self.self_attn is not None:
            t = t + self.self_attn(self.norm_self(t))
        attended, logits = self.cross_attn(self.norm_cross(t), kv)
        t = self._feed_forward(t + attended)
        t = self.proj_out(t).view(b, h, w, c).permute(0, 3, 1, 2)        # [B, C, h, w]
        return self.modulate(x + t, kv.film), logits


class Generator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        ch, groups = config.generator_channels, config.norm_groups
        self.mask_embedder = MaskEmbedder(config)
        self.res_blocks = nn.ModuleList()
        self.transformer_blocks = nn.ModuleList()
        for i in range(config.num_stages):
            self.res_blocks.append(ResBlock(ch[i], ch[i + 1], groups, upsample=i > 0))
            self.transformer_blocks.append(TransformerBlock(
                ch[i + 1], config.code_dim, config.attention_heads[i], config.attention_head_dim[i],
                config.self_attention[i], config.ff_mult, groups, config.identity_film,
            ))
        self.norm_out = group_norm(ch[-1], groups)
        self.to_rgb = nn.Conv2d(ch[-1], 3, 1)

    def fold_context(self, context: torch.Tensor) -> list[ContextKV]:
        """context [B, T, code_dim] -> one ContextKV per cross-attention layer (cacheable)."""
        return [block.fold_context(context) for block in self.transformer_blocks]

    def fold(self, context: torch.Tensor, stages: "tuple[bool, ...] | list[bool] | None" = None
             ) -> list[FoldedBlock | ContextKV]:
        """context [B, T, code_dim] -> per transformer block, for inference: the block folded with
        it (FoldedBlock; idface.model.folding: the same function, fewer FLOPs) where `stages[i]`
        is True (None: every block), else the block's ContextKV (the plain block runs). Cacheable;
        `to_dtype(blocks, dtype)` rounds them for a bfloat16 generator."""
        stages = [True] * len(self.transformer_blocks) if stages is None else list(stages)
        if len(stages) != len(self.transformer_blocks):
            raise ValueError(f"{len(stages)} fold choices for {len(self.transformer_blocks)} blocks")
        with torch.no_grad():
            return [fold_block(block, context) if fold else block.fold_context(context)
                    for block, fold in zip(self.transformer_blocks, stages)]

    def forward(
        self,
        mask: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        context_kv: list[ContextKV] | None = None,
        folded: list[FoldedBlock | ContextKV] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[LayerAttention]]:
        """mask [B, K, H, W] one-hot, context [B, T, code_dim] (or its `context_kv`, or the
        blocks `folded` with it, inference only: `fold`, a FoldedBlock or a ContextKV per block)
        -> image [B, 3, H', W'] in [-1, 1]
        (H' = config.image_size), and with return_attention a LayerAttention per stage."""
        if context_kv is None and folded is None:
            if context is None:
                raise ValueError("Generator needs a context, a folded context_kv or folded blocks")
            context_kv = self.fold_context(context)
        x = self.mask_embedder(mask)
        attention = []
        for i, (res, block) in enumerate(zip(self.res_blocks, self.transformer_blocks)):
            x = res(x)
            step = folded[i] if folded is not None else context_kv[i]
            x, logits = run_folded(block, x, step) if isinstance(step, FoldedBlock) else block(x, step)
            if return_attention:
                b, _, h, w = x.shape
                attention.append(LayerAttention(
                    stage=i,
                    logits=logits.mean(2).transpose(1, 2).reshape(b, -1, h, w),
                    probs=logits.softmax(-1).mean(2).transpose(1, 2).reshape(b, -1, h, w),
                ))
        image = self.head(x)
        return (image, attention) if return_attention else image

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last stage's features [B, C, S, S] -> image [B, 3, S, S] in [-1, 1]."""
        return torch.tanh(self.to_rgb(F.silu(self.norm_out(x))))

    def run_stages(self, x: torch.Tensor, context_kv: list[ContextKV], first: int = 0,
                   end: int | None = None) -> torch.Tensor:
        """Stages first..end-1 (plain blocks) on features x (the mask embedder's output for
        first = 0); with end None, the remaining stages and the head -> image [B, 3, S, S]. The
        computation of `forward`, split so that fitting can keep a frozen stage's output."""
        last = len(self.res_blocks) if end is None else end
        for i in range(first, last):
            x, _ = self.transformer_blocks[i](self.res_blocks[i](x), context_kv[i])
        return x if end is not None else self.head(x)
