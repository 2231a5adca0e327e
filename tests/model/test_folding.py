"""Folding the generator's transformer blocks with a fixed context (idface.model.folding) is exact:
the folded block computes the same function as the plain block, only bracketed differently.

Every block kind of small configs is checked against the plain block, with the parameters that
start at 0 or 1 (output projection, LayerNorm / GroupNorm affine, biases) randomised so that a
dropped term would show (each of a dozen such one-line mutations of folding.py fails a test
here). fold_block computes in float32 (float64 for a float64 block), so the float64 checks test the
algebra and the float32 checks test what ships.

Measured here (CPU, the seeds below), asserted with the tolerances in brackets:
  float64 folded vs plain: block output and logits <= 1.7e-15 relative, image 1.7e-15   [1e-10]
  float32 folded vs plain: block output <= 5.6e-7, logits <= 4.5e-7 relative, image
      <= 6.6e-7 abs, attention probabilities <= 1.9e-8 abs                            [1e-4]
  bf16 folded generator vs fp32 on [-1, 1]: max abs 0.032 (tiny, batch 2), 0.035 (low-rank
      config), mean abs 0.0040 / 0.0041 - the plain bf16 generator: 0.034 / 0.037, 0.0040 /
      0.0042                                                       [max 0.1, mean 0.012]
(Blocks whose C >= D keep the plain feed-forward output (FoldedBlock.ff_out None): 0 error.)"""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import torch
from torch import nn

from idface.labels import NUM_CLASSES
from idface.model import Generator, IdFaceModel, get_config
from idface.model.folding import AffineLayerNorm, apply_layer_norm, fold_block, fold_layer_norm, run_folded
from test_networks import tiny_inputs

T = NUM_CLASSES + 1          # context tokens: 19 class codes + the identity token

# Small configs (overrides of "tiny": channels 64 -> 48, 32, 16, 16; inner widths 32, 32, 32, 16).
CONFIGS = {
    "tiny": {},                                                   # self-attention in blocks 0, 1
    "all-self-attention": dict(self_attention=(True, True, True, True)),     # block 2: C 16 < D 32
    # blocks 2, 3: C + H*T = 16 + 20 < D = 64, so fold_block picks the low-rank form itself
    "low-rank": dict(attention_heads=(2, 2, 1, 1), attention_head_dim=(16, 16, 64, 64)),
}

# (config, block, fold_block's low_rank argument, expected (folded.low_rank, a_weight is not None))
BLOCK_CASES = {
    "self-attn C>D": ("tiny", 0, None, (False, False)),             # C 48 > D 32: q/k/v not folded
    "self-attn C=D": ("tiny", 1, None, (False, False)),             # C 32 = D 32: not folded either
    "self-attn C<D": ("all-self-attention", 2, None, (False, True)),  # q/k/v folded from g (QR root)
    "no-self-attn dense": ("tiny", 2, None, (False, False)),        # C + HT = 56 >= D 32: dense
    "no-self-attn C=D dense": ("tiny", 3, None, (False, False)),
    "low-rank r+1>D": ("tiny", 2, True, (True, True)),              # r = 56 > D 32 (forced)
    "low-rank r+1>>D": ("tiny", 3, True, (True, True)),             # r = 56 > D 16 (forced)
    "low-rank auto": ("low-rank", 2, None, (True, True)),           # r = 36 < D 64
    "low-rank auto 64^2": ("low-rank", 3, None, (True, True)),      # 4096 tokens: two ff chunks
}

def make_generator(name: str, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(get_config("tiny", **CONFIGS[name])).eval()
    randomise_constants(generator)
    return generator


def randomise_constants(module: nn.Module, std: float = 0.3) -> None:
    """Give every parameter that starts at 0 or 1 a random value: norm weights (1) and biases (0),
    Linear biases (to_out, ff, proj_out: 0) and the transformer blocks' proj_out and identity_film
    weights (0)."""
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.copy_(1 + std * torch.randn_like(m.weight))
                m.bias.normal_(std=std)
            elif isinstance(m, nn.Linear):
                if m.bias is not None:
                    m.bias.normal_(std=std)
                if name.endswith(("proj_out", "identity_film")):   # zero-initialised weights
                    m.weight.normal_(std=std)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    return float((a - ref).abs().max() / ref.abs().max())


TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def block_params():
    for case, (config, index, low_rank, expected) in BLOCK_CASES.items():
        for dtype in (torch.float64, torch.float32):
            dname = str(dtype).removeprefix("torch.")
            batches = (1, 2) if expected[0] else (2,)
            for batch in batches:
                yield pytest.param(config, index, low_rank, expected, dtype, batch,
                                   id=f"{case}-{dname}-batch{batch}")


@pytest.mark.parametrize("config,index,low_rank,expected,dtype,batch", list(block_params()))
def test_folded_block_equals_plain_block(config, index, low_rank, expected, dtype, batch):
    generator = make_generator(config)
    block = generator.transformer_blocks[index].to(dtype)
    cfg = get_config("tiny", **CONFIGS[config])
    res = cfg.base_resolution * 2**index
    torch.manual_seed(1)
    x = torch.randn(batch, block.proj_out.out_features, res, res, dtype=dtype)
    context = torch.randn(batch, T, cfg.code_dim, dtype=dtype)      # a different context per row
    with torch.no_grad():
        ref, ref_logits = block(x, block.fold_context(context))    # with the identity modulation
        folded = fold_block(block, context, low_rank=low_rank)
        assert (folded.low_rank, folded.a_weight is not None) == expected
        for chunk in (2048, 1000):        # 1000 divides no token count: a ragged last chunk
            out, logits = run_folded(block, x, folded.to(dtype), chunk=chunk)
            assert out.shape == ref.shape and logits.shape == ref_logits.shape
            assert rel_err(out - x, ref - x) < TOL[dtype], f"block output, chunk {chunk}"
            assert rel_err(logits, ref_logits) < TOL[dtype], f"logits, chunk {chunk}"


def test_low_rank_is_refused_for_a_block_with_self_attention():
    block = make_generator("tiny").transformer_blocks[0]
    with pytest.raises(ValueError, match="self-attention"):
        fold_block(block, torch.randn(1, T, get_config("tiny").code_dim), low_rank=True)


def context_and_mask(model: IdFaceModel, batch: int, dtype: torch.dtype):
    mask, image, embedding = tiny_inputs(model.config, batch=batch)
    mask, image, embedding = mask.to(dtype), image.to(dtype), embedding.to(dtype)
    codes, _ = model.encode_style(image, mask)
    return model.context(codes, model.identity_token(embedding)), mask


GENERATOR_CASES = [
    pytest.param("tiny", 2, id="tiny-batch2"),
    pytest.param("low-rank", 1, id="low-rank-batch1"),
    pytest.param("low-rank", 2, id="low-rank-batch2"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("config,batch", GENERATOR_CASES)
def test_folded_generator_equals_plain_generator(config, batch, dtype):
    torch.manual_seed(0)
    model = IdFaceModel(get_config("tiny", **CONFIGS[config])).eval().to(dtype)
    randomise_constants(model.generator)
    with torch.no_grad():
        context, mask = context_and_mask(model, batch, dtype)
        assert batch == 1 or not torch.allclose(context[0], context[1])
        ref, ref_layers = model.generator(mask, context, return_attention=True)
        folded = model.generator.fold(context)
        out, layers = model.generator(mask, folded=folded, return_attention=True)
    assert out.dtype == dtype and out.shape == ref.shape
    assert float((out - ref).abs().max()) < TOL[dtype]
    assert len(layers) == len(ref_layers) == model.config.num_stages
    for layer, ref_layer in zip(layers, ref_layers):
        assert layer.stage == ref_layer.stage
        assert rel_err(layer.logits, ref_layer.logits) < TOL[dtype], f"stage {layer.stage} logits"
        assert float((layer.probs - ref_layer.probs).abs().max()) < TOL[dtype], f"stage {layer.stage} probs"


def test_folded_block_to_bf16_rounds_every_tensor_once():
    generator = make_generator("low-rank")
    context = torch.randn(1, T, get_config("tiny", **CONFIGS["low-rank"]).code_dim)
    folded = generator.fold(context)
    assert [f.low_rank for f in folded] == [False, False, True, True]   # both kinds
    for block in folded:
        half = block.to(torch.bfloat16)
        for f in fields(block):
            value, rounded = getattr(block, f.name), getattr(half, f.name)
            if isinstance(value, torch.Tensor):
                assert value.dtype == torch.float32, f"{f.name}: the original is left as it was"
                assert rounded.dtype == torch.bfloat16, f.name
                assert torch.equal(rounded, value.to(torch.bfloat16)), f.name
            elif f.name == "kv" and value is not None:
                assert type(rounded) is type(value)
                for full, part in zip(value, rounded):
                    if full is None:        # ContextKV.film: the block's own FoldedBlock.film holds it
                        assert part is None
                        continue
                    assert full.dtype == torch.float32 and part.dtype == torch.bfloat16
                    assert torch.equal(part, full.to(torch.bfloat16))
            else:
                assert rounded == value, f.name
        assert (block.kv is None) == block.low_rank


@pytest.mark.parametrize("config,batch", [("tiny", 2), ("low-rank", 1)])
def test_bf16_folded_generator_stays_near_fp32(config, batch):
    """Measured max / mean abs difference from fp32 on [-1, 1]: 0.032 / 0.0040 (tiny, batch 2),
    0.035 / 0.0041 (low-rank, batch 1); the plain bf16 generator: 0.034 / 0.0040, 0.037 / 0.0042."""
    torch.manual_seed(0)
    model = IdFaceModel(get_config("tiny", **CONFIGS[config])).eval()
    randomise_constants(model.generator)
    generator = model.generator
    with torch.no_grad():
        context, mask = context_and_mask(model, batch, torch.float32)
        ref = generator(mask, context)
        folded = generator.fold(context)
        generator_bf16 = copy.deepcopy(generator).to(torch.bfloat16)
        mask_bf16 = mask.to(torch.bfloat16)
        out = generator_bf16(mask_bf16, folded=[f.to(torch.bfloat16) for f in folded])
        kv_bf16 = [type(kv)(*(t.to(torch.bfloat16) for t in kv)) for kv in generator.fold_context(context)]
        plain = generator_bf16(mask_bf16, context_kv=kv_bf16)
    assert out.dtype == torch.bfloat16
    diff, plain_diff = (out.float() - ref).abs(), (plain.float() - ref).abs()
    assert float(diff.max()) < 0.1 and float(diff.mean()) < 0.012
    # folding costs no accuracy in bf16 either: no worse than the plain bf16 generator
    assert float(diff.max()) < 2 * float(plain_diff.max())
    assert float(diff.mean()) < 1.5 * float(plain_diff.mean())


def spread_err(a: torch.Tensor, ref: torch.Tensor, pixel_dims) -> float:
    """Max abs error relative to how much `ref` varies over the pixels: when a large offset
    dominates the stream, this is the part that carries the mask, and what precision loss hits."""
    a, ref = a.double(), ref.double()
    return float((a - ref).abs().max() / (ref - ref.mean(pixel_dims, keepdim=True)).abs().max())


@pytest.mark.parametrize("offset", ["spread", "common"])
@pytest.mark.parametrize("config,index,low_rank", [
    pytest.param("tiny", 2, True, id="low-rank-r+1>D"),
    pytest.param("low-rank", 2, None, id="low-rank-auto"),
    pytest.param("all-self-attention", 2, None, id="self-attn-qkv-fold"),
])
def test_folding_is_exact_when_an_offset_dominates_the_stream(config, index, low_rank, offset):
    """proj_in's bias at 1e3 scale: spread over the channels (N(0, 1e3): LayerNorm sees a huge
    centred offset) or common to them (1e3 + N(0, 1): a huge mean). The folded LayerNorm (QR root
    of the centred basis and offset) must lose nothing: float64 errors measured <= 3.4e-12 of the
    output's variation over the pixels [1e-10]; float32 errors 5.8e-5 .. 2.7e-4 of it, about the
    plain float32 block's own (folded / plain <= 1.3 [3])."""
    generator = make_generator(config)
    block = generator.transformer_blocks[index]
    with torch.no_grad():
        if offset == "spread":
            block.proj_in.bias.normal_(std=1e3)
        else:
            block.proj_in.bias.copy_(1e3 + torch.randn_like(block.proj_in.bias))
    cfg = get_config("tiny", **CONFIGS[config])
    res = cfg.base_resolution * 2**index
    torch.manual_seed(1)
    x = torch.randn(1, block.proj_out.out_features, res, res)
    context = torch.randn(1, T, cfg.code_dim)
    block64 = copy.deepcopy(block).double()
    x64, context64 = x.double(), context.double()
    with torch.no_grad():
        truth, truth_logits = block64(x64, block64.fold_context(context64))
        out64, logits64 = run_folded(block64, x64, fold_block(block64, context64, low_rank=low_rank))
        plain, plain_logits = block(x, block.fold_context(context))
        out, logits = run_folded(block, x, fold_block(block, context, low_rank=low_rank))
    assert spread_err(out64 - x64, truth - x64, (2, 3)) < 1e-10
    assert spread_err(logits64, truth_logits, 1) < 1e-10
    # float32: folding is no less accurate than the plain block (both against float64)
    for folded_err, plain_err in [
        (spread_err(out - x, truth - x64, (2, 3)), spread_err(plain - x, truth - x64, (2, 3))),
        (spread_err(logits, truth_logits, 1), spread_err(plain_logits, truth_logits, 1)),
    ]:
        assert folded_err < 3 * max(plain_err, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("proj_batch", ["per-row", "shared"])
@pytest.mark.parametrize("rows,width", [(5, 16), (7, 8), (12, 8), (40, 6)],
                         ids=["r+1<D", "r+1=D", "r+1>D", "r+1>>D"])
def test_fold_layer_norm_reproduces_layer_norm_then_projection(rows, width, proj_batch, dtype):
    """AffineLayerNorm's documented formula, for s = z @ basis + offset:
    sigma = sqrt(|z @ root + root_offset|^2 / D + eps), out = (z @ scaled + scaled_offset) / sigma + shift
    equals LayerNorm(s) @ proj + bias; apply_layer_norm computes it from the stacked products."""
    torch.manual_seed(0)
    b, n, out_width = 2, 50, 9
    basis = torch.randn(b, rows, width, dtype=dtype)
    offset = 3 * torch.randn(b, 1, width, dtype=dtype)
    norm = nn.LayerNorm(width, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(width))
        norm.bias.normal_()
    proj = torch.randn(b if proj_batch == "per-row" else 1, width, out_width, dtype=dtype)
    bias = torch.randn(out_width, dtype=dtype)
    z = torch.randn(b, n, rows, dtype=dtype)
    with torch.no_grad():
        folded = fold_layer_norm(basis, offset, norm, proj, bias)
        ref = norm(z @ basis + offset) @ proj + bias
        stacked = torch.cat([z @ folded.scaled + folded.scaled_offset,
                             z @ folded.root + folded.root_offset], -1)
        applied = apply_layer_norm(stacked, out_width, folded.root.shape[-1], width, norm.eps, folded.shift)
    assert isinstance(folded, AffineLayerNorm)
    q = folded.root.shape[-1]
    assert q <= min(rows + 1, width)
    assert folded.scaled.shape == (b, rows, out_width) and folded.root.shape == (b, rows, q)
    sigma = ((z @ folded.root + folded.root_offset).square().sum(-1, keepdim=True) / width + norm.eps).sqrt()
    out = (z @ folded.scaled + folded.scaled_offset) / sigma + folded.shift
    assert rel_err(out, ref) < TOL[dtype]
    assert rel_err(applied, ref) < TOL[dtype]
