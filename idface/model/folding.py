"""Exact folding of the generator's transformer blocks for one fixed context (inference only).

While a user edits a mask, the context (19 style codes + the identity token) is fixed, so every
linear map that only meets the context or the weights can be multiplied out once. Nothing is
approximated: the folded block computes the same function in a different bracketing, and
tests/model/test_folding.py checks it against the plain block to float32 rounding.

Why it pays: a block without self-attention (the 128^2 and 256^2 stages of paper-256) never
leaves a low-dimensional subspace of its inner width D. With g = GroupNorm(x) tokens [N, C]:

    t0 = g W_in^T + b_in                          rank C        (C = 32, D = 512 at 128^2)
    t1 = t0 + P VO + b_o                          rank C + H*T  (P: softmax over T tokens, H heads)

so t1 = z A + a with z = [g, P] of width r = C + H*T (192 instead of 512 at 128^2). LayerNorm
of such a stream is computable from z alone:

    t1 - mean(t1) = z Ac + ac                     (Ac, ac: A, a with their row means removed)
    |z Ac + ac|^2 = |[z, 1] R^T|^2                ([Ac; ac]^T = Q R, Q with orthonormal columns)
    LN(t1) W^T    = (z (Ac Gamma W^T) + ac Gamma W^T) / sigma + beta W^T

and the feed-forward's output projection folds into the block's own output projection
(proj_out(t1 + ff_out(h)) = t1 W_po^T + h (W_po W_fo)^T + const, [mD, C] instead of [mD, D]).
The feed-forward's first matmul then reads z (r wide) instead of t1 (D wide), and the second
writes C channels instead of D. Blocks with self-attention keep their D-wide stream after the
attention, but still fold their q/k/v projections (their input t0 has rank C) and the
feed-forward's output projection; so do blocks whose [g, P] is not narrower than D (small presets).

    FoldedBlock  everything one block needs for one context, computed in float32
    fold_block   (block, context [B, T, code_dim]) -> FoldedBlock
    run_folded   (block, x [B, C, h, w], FoldedBlock) -> (x' [B, C, h, w], logits [B, N, H, T])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from idface.model.generator import ContextKV, TransformerBlock


class AffineLayerNorm(NamedTuple):
    """LayerNorm(s) @ proj + bias for a stream known to be s = z @ basis + offset:

        sigma = sqrt(|z @ root + root_offset|^2 / D + eps)
        out   = (z @ scaled + scaled_offset) / sigma + shift
    """

    scaled: torch.Tensor          # [B, r, out]
    scaled_offset: torch.Tensor   # [B, 1, out]
    root: torch.Tensor            # [B, r, q]     q <= r + 1
    root_offset: torch.Tensor     # [B, 1, q]
    shift: torch.Tensor           # [B, 1, out]


def fold_layer_norm(basis: torch.Tensor, offset: torch.Tensor, norm: nn.LayerNorm,
                    proj: torch.Tensor, bias: torch.Tensor | None = None) -> AffineLayerNorm:
    """basis [B, r, D], offset [B, 1, D], proj [B or 1, D, out] (right-multiplied), bias [out]."""
    basis_c = basis - basis.mean(-1, keepdim=True)
    offset_c = offset - offset.mean(-1, keepdim=True)
    gamma = norm.weight.to(basis.dtype)
    shift = norm.bias.to(basis.dtype) @ proj
    if bias is not None:
        shift = shift + bias.to(basis.dtype)
    # |[z, 1] @ [basis_c; offset_c]| = |[z, 1] @ R^T| for [basis_c; offset_c]^T = Q R
    r = torch.linalg.qr(torch.cat([basis_c, offset_c], 1).transpose(-1, -2), mode="r").R
    root = r.transpose(-1, -2)                                            # [B, r + 1, q]
    return AffineLayerNorm((basis_c * gamma) @ proj, (offset_c * gamma) @ proj,
                           root[:, :-1], root[:, -1:], shift.unsqueeze(1))


# Stacked matmul outputs are padded to a multiple of this many columns: oneDNN's bf16 kernels
# ran about 2x slower on an odd width (4385) than on the next multiple of 64 (measured here).
COLUMN_ALIGN = 64
# Elements of a feed-forward chunk's widest activation (see token_chunk).
CHUNK_ELEMENTS = 2**22


def pad_root(folded: AffineLayerNorm, other_columns: int) -> AffineLayerNorm:
    """Zero columns appended to the root (they add nothing to |z @ root|), so that the stacked
    matmul [out | root | other_columns] is a multiple of COLUMN_ALIGN wide."""
    pad = -(folded.scaled.shape[-1] + folded.root.shape[-1] + other_columns) % COLUMN_ALIGN
    return folded._replace(root=F.pad(folded.root, (0, pad)),
                           root_offset=F.pad(folded.root_offset, (0, pad)))


def apply_layer_norm(y: torch.Tensor, width: int, roots: int, norm_width: int, eps: float,
                     shift: torch.Tensor) -> torch.Tensor:
    """y [B, n, width + roots] = [z @ scaled + .., z @ root + ..] -> the folded LayerNorm's output."""
    wide = torch.promote_types(y.dtype, torch.float32)                   # bf16 -> float32, float64 stays
    sigma2 = y[..., width:width + roots].to(wide).square().sum(-1, keepdim=True) / norm_width + eps
    scale = sigma2.rsqrt().to(y.dtype)                                    # [B, n, 1]
    return torch.addcmul(shift, y[..., :width], scale)


@dataclass
class FoldedBlock:
    """One transformer block folded with one context. Shapes for paper-256's 128^2 stage
    (C 32, D 512, H 8, T 20, ff hidden m*D 2048) in the comments; B = context batch."""

    low_rank: bool                            # True: run in the span of [g, P] (no self-attention)
    heads: int
    tokens: int
    ff_hidden: int                            # m * D
    norm_width: int                           # D, for the LayerNorm variance
    eps_cross: float
    eps_ff: float
    # stage A: from g [B, N, C]; its output columns [cross logits | cross root] (low rank) or
    # [qkv | qkv root | t0] (self-attention blocks with C < D)
    a_weight: torch.Tensor | None             # [B, C, HT + q1]
    a_offset: torch.Tensor | None             # [B, 1, HT + q1]
    a_shift: torch.Tensor | None              # [B, 1, HT] (or [1, 1, 3D])
    # stage B (low rank): from z = [g, P, 1] [B, N, C + HT + 1]; columns [ff in | ff root |
    # residual]; the last row is the constant term (a column of ones in z: no bias to broadcast)
    b_weight: torch.Tensor | None             # [B, C + HT + 1, 2mD + q2 + C]
    ff_shift: torch.Tensor | None             # [B, 1, 2mD]
    # self-attention blocks: the cross-attention folded with the context, and the block output
    kv: "ContextKV | None"
    out_stream: torch.Tensor | None           # [D, C]   t @ W_po^T
    # both: the feed-forward's output projection times the block's output projection
    ff_out: torch.Tensor | None               # [mD, C]  (W_po W_fo)^T; None where C >= D (no saving)
    out_offset: torch.Tensor                  # [1, 1, C] (low rank: in b_weight's last row)
    # the identity modulation of the block's output (TransformerBlock.identity_film), or None
    film: torch.Tensor | None = None          # [B, 2C] = [scale | shift]

    def to(self, dtype: torch.dtype) -> "FoldedBlock":
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = value.to(dtype)
            elif f.name == "kv" and value is not None:
                changes[f.name] = type(value)(*(None if t is None else t.to(dtype) for t in value))
        return replace(self, **changes)


def fold_block(block: "TransformerBlock", context: torch.Tensor,
               low_rank: bool | None = None) -> FoldedBlock:
    """block + context [B, T, code_dim] -> FoldedBlock, in float32 (float64 for a float64 block).
    low_rank: run the block in the span of [g, P] (only without self-attention); None: when that
    is narrower than the block's inner width (C + H*T < D), i.e. when it saves work."""
    cross = block.cross_attn
    heads, tokens = cross.heads, context.shape[1]
    dtype = torch.promote_types(block.proj_in.weight.dtype, torch.float32)
    w = {name: p.detach().to(dtype) for name, p in block.named_parameters()}
    kv = cross.fold_context(context.to(cross.to_k.weight.dtype))
    query_key, value_out = kv.query_key.to(dtype), kv.value_out.to(dtype)   # [B, D, HT], [B, HT, D]
    b = context.shape[0]
    w_in, b_in = w["proj_in.weight"].t()[None], w["proj_in.bias"].view(1, 1, -1)   # [1, C, D]
    w_po, b_po = w["proj_out.weight"], w["proj_out.bias"]                            # [C, D]
    w_fo, b_fo = w["ff.out.weight"], w["ff.out.bias"]                                # [D, mD]
    ff_out = (w_po @ w_fo).t().contiguous()                                          # [mD, C]
    out_offset = (b_po + w_po @ b_fo).view(1, 1, -1)
    film = None
    if block.identity_film is not None:                                              # [B, 2C]
        film = context[:, -1].to(dtype) @ w["identity_film.weight"].t() + w["identity_film.bias"]
    common = dict(heads=heads, tokens=tokens, ff_hidden=w_fo.shape[1], norm_width=w_in.shape[-1],
                  eps_cross=block.norm_cross.eps, eps_ff=block.norm_ff.eps, ff_out=ff_out, film=film)

    channels, inner = w_in.shape[1], w_in.shape[2]
    if low_rank is None:
        low_rank = block.self_attn is None and channels + heads * tokens < inner
    if low_rank and block.self_attn is not None:
        raise ValueError("a block with self-attention has no low-rank form")
    if low_rank:
        # stage A: cross-attention logits from g alone (t0 has rank C)
        logits = pad_root(fold_layer_norm(w_in, b_in, block.norm_cross, query_key), 0)
        a_weight = torch.cat([logits.scaled, logits.root.expand(b, -1, -1)], -1)
        a_offset = torch.cat([logits.scaled_offset.expand(b, -1, -1),
                              logits.root_offset.expand(b, -1, -1)], -1)
        # stage B: t1 = [g, P] @ [W_in^T; VO] + (b_in + b_o)
        basis = torch.cat([w_in.expand(b, -1, -1), value_out], 1)                     # [B, C+HT, D]
        offset = (b_in + w["cross_attn.to_out.bias"].view(1, 1, -1)).expand(b, -1, -1)      # [B, 1, D]
        ff_in = pad_root(fold_layer_norm(basis, offset, block.norm_ff, w["ff.proj.weight"].t()[None],
                                         w["ff.proj.bias"]), channels)
        residual = basis @ w_po.t()                                                  # [B, C+HT, C]
        residual_offset = offset @ w_po.t() + out_offset
        return FoldedBlock(
            low_rank=True, a_weight=a_weight.contiguous(), a_offset=a_offset.contiguous(),
            a_shift=logits.shift.expand(b, -1, -1).contiguous(),
            b_weight=torch.cat([
                torch.cat([ff_in.scaled, ff_in.root, residual], -1),
                torch.cat([ff_in.scaled_offset.expand(b, -1, -1), ff_in.root_offset.expand(b, -1, -1),
                           residual_offset.expand(b, -1, -1)], -1),
            ], 1).contiguous(),
            ff_shift=ff_in.shift, kv=None, out_stream=None, out_offset=out_offset, **common,
        )

    a_weight = a_offset = a_shift = None
    if block.self_attn is not None and channels < inner:   # q, k, v from g, and t0 beside them
        qkv = pad_root(fold_layer_norm(w_in, b_in, block.norm_self, w["self_attn.to_qkv.weight"].t()[None]),
                       inner)
        a_weight = torch.cat([qkv.scaled, qkv.root, w_in], -1).contiguous()
        a_offset = torch.cat([qkv.scaled_offset, qkv.root_offset, b_in], -1).contiguous()
        a_shift = qkv.shift.contiguous()
    if channels >= inner:                        # folding W_po into W_fo would cost more, not less
        common["ff_out"] = None
    return FoldedBlock(
        low_rank=False, a_weight=a_weight, a_offset=a_offset, a_shift=a_shift,
        b_weight=None, ff_shift=None,
        kv=type(kv)(query_key, value_out), out_stream=w_po.t().contiguous(), out_offset=out_offset,
        **common,
    )


def _geglu(u: torch.Tensor) -> torch.Tensor:
    value, gate = u.chunk(2, dim=-1)
    return F.gelu(gate).mul_(value)


def token_chunk(width: int) -> int:
    """Tokens per feed-forward chunk: a power of two near CHUNK_ELEMENTS / the matmul's width, so
    the chunk's activations stay cache-sized (measured best here: 1024 tokens at 128^2, 4096 at
    256^2 for paper-256)."""
    return max(256, 2 ** round(math.log2(CHUNK_ELEMENTS / width)))


def run_folded(block: "TransformerBlock", x: torch.Tensor, folded: FoldedBlock,
               chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, C, h, w] -> (x + block output [B, C, h, w], cross-attention logits [B, N, H, T]).
    The same function as block(x, kv); the feed-forward runs in token chunks (`chunk`, default
    token_chunk of its width)."""
    b, c, h, w = x.shape
    n = h * w
    g = block.norm(x).permute(0, 2, 3, 1).reshape(b, n, c)              # [B, N, C]
    heads, tokens = folded.heads, folded.tokens
    ht = heads * tokens
    out = torch.empty(b, n, c, dtype=x.dtype, device=x.device)

    if folded.low_rank:
        y = torch.baddbmm(folded.a_offset, g, folded.a_weight)                        # [B, N, HT + q1]
        logits = apply_layer_norm(y, ht, y.shape[-1] - ht, folded.norm_width, folded.eps_cross,
                                  folded.a_shift).view(b, n, heads, tokens)
        probs = logits.softmax(-1).view(b, n, ht)                                     # [B, N, HT]
        width = 2 * folded.ff_hidden
        roots = folded.b_weight.shape[-1] - width - c
        chunk = chunk or token_chunk(folded.b_weight.shape[-1])
        ones = torch.ones(b, min(chunk, n), 1, dtype=g.dtype, device=g.device)
        for i in range(0, n, chunk):
            part = slice(i, i + chunk)
            z = torch.cat([g[:, part], probs[:, part], ones[:, :g[:, part].shape[1]]], -1)  # [B, n, C+HT+1]
            y = torch.matmul(z, folded.b_weight)                                      # [B, n, 2mD + q2 + C]
            u = apply_layer_norm(y, width, roots, folded.norm_width, folded.eps_ff, folded.ff_shift)
            out[:, i:i + chunk] = torch.baddbmm(y[..., width + roots:], _geglu(u), folded.ff_out.expand(b, -1, -1))
        return block.modulate(x + out.view(b, h, w, c).permute(0, 3, 1, 2), folded.film), logits

    if folded.a_weight is not None:
        three_d = folded.a_shift.shape[-1]
        y = torch.baddbmm(folded.a_offset, g, folded.a_weight.expand(b, -1, -1))     # [B, N, 3D + q + D]
        roots = y.shape[-1] - three_d - folded.norm_width
        qkv = apply_layer_norm(y, three_d, roots, folded.norm_width, block.norm_self.eps, folded.a_shift)
        t = y[..., three_d + roots:]                                                  # t0 [B, N, D]
        t = t + block.self_attn.attend(qkv)
    else:
        t = block.proj_in(g)                                                          # [B, N, D]
        if block.self_attn is not None:
            t = t + block.self_attn(block.norm_self(t))
    attended, logits = block.cross_attn(block.norm_cross(t), folded.kv)
    t = t + attended                                                                  # [B, N, D]
    chunk = chunk or token_chunk(2 * folded.ff_hidden)
    for i in range(0, n, chunk):
        part = t[:, i:i + chunk]
        hidden = _geglu(block.ff.proj(block.norm_ff(part)))                           # [B, n, mD]
        if folded.ff_out is None:
            out[:, i:i + chunk] = block.proj_out(part + block.ff.out(hidden))
            continue
        out[:, i:i + chunk] = torch.baddbmm(
            torch.baddbmm(folded.out_offset, part, folded.out_stream.expand(b, -1, -1)),
            hidden, folded.ff_out.expand(b, -1, -1))
    return block.modulate(x + out.view(b, h, w, c).permute(0, 3, 1, 2), folded.film), logits
