"""Networks: shapes per preset, gradients, attention, the folded cross-attention algebra, and
where a class's style code acts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from idface.errors import InputError
from idface.labels import CLASS_INDEX, NUM_CLASSES
from idface.model import PRESETS, IdFaceModel, ModelConfig, get_config

K = NUM_CLASSES


def onehot(label_maps: np.ndarray) -> torch.Tensor:
    """[B, H, W] indices -> [B, K, H, W] float one-hot."""
    return F.one_hot(torch.from_numpy(label_maps.astype(np.int64)), K).permute(0, 3, 1, 2).float()


def face_layout(size: int) -> np.ndarray:
    """A crude face: hair on top, skin, cloth bottom-left, a mouth; eyeglasses etc. absent."""
    lm = np.full((size, size), CLASS_INDEX["skin"], np.uint8)
    lm[: size // 2] = CLASS_INDEX["hair"]
    lm[size // 2:, : size // 3] = CLASS_INDEX["cloth"]
    lm[size * 5 // 8: size * 6 // 8, size // 3: size * 2 // 3] = CLASS_INDEX["mouth"]
    lm[size - 2:, size - 2:] = CLASS_INDEX["background"]
    return lm


def randomise_zero_init(model: torch.nn.Module, std: float = 0.1) -> None:
    """The transformer blocks' output projections start at zero (so an untrained block is the
    identity); give them values as training would, so that context actually reaches the output."""
    for block in model.generator.transformer_blocks:
        torch.nn.init.normal_(block.proj_out.weight, std=std)


def tiny_inputs(config: ModelConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    lm = np.stack([face_layout(s)] * batch)
    image = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    embedding = torch.randn(batch, config.identity_dim, generator=g)
    return onehot(lm), image, embedding


@pytest.mark.parametrize("preset", ["tiny"])
def test_shapes(preset):
    config = get_config(preset)
    model = IdFaceModel(config).eval()
    mask, image, embedding = tiny_inputs(config, batch=2)
    with torch.no_grad():
        codes, presence = model.encode_style(image, mask)
        token = model.identity_token(embedding)
        context = model.context(codes, token)
        out, layers = model.generator(mask, context, return_attention=True)
    s, c = config.image_size, config.code_dim
    assert codes.shape == (2, K, c) and presence.shape == (2, K)
    assert token.shape == (2, 1, c) and context.shape == (2, K + 1, c)
    assert out.shape == (2, 3, s, s) and out.abs().max() <= 1
    assert len(layers) == config.num_stages
    for i, layer in enumerate(layers):
        r = config.base_resolution * 2**i
        assert layer.logits.shape == layer.probs.shape == (2, K + 1, r, r)


@pytest.mark.slow
def test_paper_256_published_sizes():
    config = get_config("paper-256")
    model = IdFaceModel(config).eval()
    counts = model.parameter_counts()
    assert 30e6 < counts["generator"] < 32e6          # ~31M with the mask embedder
    assert 17e6 < counts["style_encoder"] < 19e6      # ~18M
    assert config.code_dim == 1280 and config.num_tokens == 20
    mask = onehot(face_layout(256)[None])
    with torch.no_grad():
        codes, _ = model.encode_style(torch.zeros(1, 3, 256, 256), mask)
        context = model.context(codes, model.identity_token(torch.randn(1, 512)))
        out = model.generator(mask, context)
    assert context.shape == (1, 20, 1280)
    assert out.shape == (1, 3, 256, 256)


def test_every_preset_builds_and_round_trips_its_config():
    for name in PRESETS:
        config = get_config(name)
        again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="unknown field"):
        ModelConfig.from_dict({**get_config("tiny").to_dict(), "surprise": 1})
    with pytest.raises(InputError, match="attention_heads"):
        get_config("tiny", attention_heads=(2, 2))
    with pytest.raises(InputError, match="unknown model preset"):
        get_config("huge")


def test_absent_classes_get_the_learned_default_code():
    config = get_config("tiny")
    model = IdFaceModel(config).eval()
    with torch.no_grad():
        model.style_encoder.default_codes.normal_()
        mask, image, _ = tiny_inputs(config, batch=1)
        codes, presence = model.encode_style(image, mask)
    absent = CLASS_INDEX["eye_g"]
    assert not presence[0, absent] and presence[0, CLASS_INDEX["hair"]]
    assert torch.equal(codes[0, absent], model.style_encoder.default_codes[absent])


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    config = get_config("tiny")
    model = IdFaceModel(config).train()
    randomise_zero_init(model)
    mask, image, embedding = tiny_inputs(config, batch=2)
    # row 0 has a real identity, row 1 none (the learned null token); the mask lacks some classes
    out, layers = model(mask, image, identity_embedding=embedding,
                        identity_present=torch.tensor([True, False]), return_attention=True)
    loss = out.square().mean() + sum(layer.logits.mean() for layer in layers)
    loss.backward()
    dead = [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert dead == []


def test_attention_probabilities_sum_to_one_over_tokens():
    torch.manual_seed(0)
    config = get_config("tiny")
    model = IdFaceModel(config).eval()
    mask, image, embedding = tiny_inputs(config)
    with torch.no_grad():
        _, layers = model(mask, image, identity_embedding=embedding, return_attention=True)
    for layer in layers:
        assert torch.allclose(layer.probs.sum(1), torch.ones(()), atol=1e-5)
        assert layer.probs.min() >= 0
        assert torch.isfinite(layer.logits).all()


def test_folded_cross_attention_equals_the_textbook_formula():
    torch.manual_seed(0)
    config = get_config("tiny")
    attn = IdFaceModel(config).generator.transformer_blocks[1].cross_attn
    torch.nn.init.normal_(attn.to_out.bias)
    x = torch.randn(2, 50, attn.to_q.in_features)
    context = torch.randn(2, K + 1, config.code_dim)
    out, logits = attn(x, attn.fold_context(context))

    b, h, d = 2, attn.heads, attn.head_dim
    q = attn.to_q(x).view(b, -1, h, d).transpose(1, 2)                  # [B, h, N, d]
    k = attn.to_k(context).view(b, -1, h, d).transpose(1, 2)            # [B, h, T, d]
    v = attn.to_v(context).view(b, -1, h, d).transpose(1, 2)
    ref_logits = q @ k.transpose(-1, -2) / d**0.5                       # [B, h, N, T]
    ref = attn.to_out((ref_logits.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, h * d))
    assert torch.allclose(logits.transpose(1, 2), ref_logits, atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-5)


def test_self_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    config = get_config("tiny")
    sa = IdFaceModel(config).generator.transformer_blocks[0].self_attn
    x = torch.randn(1, 30, sa.to_qkv.in_features)
    q, k, v = sa.to_qkv(x).view(1, 30, 3, sa.heads, sa.head_dim).permute(2, 0, 3, 1, 4)
    probs = (q @ k.transpose(-1, -2) / sa.head_dim**0.5).softmax(-1)
    ref = sa.to_out((probs @ v).transpose(1, 2).reshape(1, 30, -1))
    assert torch.allclose(sa(x), ref, atol=1e-5)


def test_cached_context_gives_identical_images():
    torch.manual_seed(0)
    config = get_config("tiny")
    model = IdFaceModel(config).eval()
    randomise_zero_init(model)
    mask, image, embedding = tiny_inputs(config)
    with torch.no_grad():
        codes, _ = model.encode_style(image, mask)
        context = model.context(codes, model.identity_token(embedding))
        fresh = model.generator(mask, context)
        cached = model.generator(mask, context_kv=model.generator.fold_context(context))
    assert torch.equal(fresh, cached)


def test_code_change_acts_in_proportion_to_attention_untrained():
    """Exact for any weights: changing token t's code changes a cross-attention layer's output at
    pixel p by sum_h P_h,t(p) * (its folded value row difference) - nothing where t is not attended."""
    torch.manual_seed(0)
    config = get_config("tiny")
    attn = IdFaceModel(config).generator.transformer_blocks[2].cross_attn
    x = torch.randn(1, 64, attn.to_q.in_features)
    context = torch.randn(1, K + 1, config.code_dim)
    t = CLASS_INDEX["hair"]
    changed = context.clone()
    changed[0, t] = torch.randn(config.code_dim)
    kv, kv2 = attn.fold_context(context), attn.fold_context(changed)
    out, logits = attn(x, kv)
    out2, logits2 = attn(x, kv2)
    h, T = attn.heads, K + 1
    probs, probs2 = logits.softmax(-1), logits2.softmax(-1)             # [1, N, h, T]
    expected = (probs2.reshape(1, -1, h * T) @ kv2.value_out - probs.reshape(1, -1, h * T) @ kv.value_out)
    assert torch.allclose(out2 - out, expected, atol=1e-5)
    others = [i for i in range(T) if i != t]
    # the other tokens' value rows are unchanged: only token t's rows and the softmax weights move
    v1 = kv.value_out.view(1, h, T, -1)[:, :, others]
    v2 = kv2.value_out.view(1, h, T, -1)[:, :, others]
    assert torch.equal(v1, v2)


@pytest.mark.slow
def test_code_swap_acts_inside_its_region_once_attention_follows_the_mask():
    """Untrained cross-attention is near-uniform over the 20 tokens, so a code acts everywhere.
    So first fit the attention loss (BCE of head-averaged class logits vs the resized mask, every
    layer) for 40 Adam steps of a 32x32 model on one layout, alternating the codes of two style
    faces (random images through the untrained style encoder), with the zero-initialised output
    projections randomised as training would. Then give the hair (or skin) token face B's code:
    - every transformer block's output (same block input: where codes enter the network) changes
      far more inside that class's region than outside (measured: 4x to 2000x);
    - the image changes more inside than outside, but only by about 1.5x (hair) to 3.6x (skin):
      GroupNorm statistics and still-untrained later layers spread a change across the image,
      which only the full training objective teaches them not to do."""
    torch.manual_seed(0)
    config = get_config("tiny", image_size=32, generator_channels=(64, 48, 32, 16),
                        attention_heads=(2, 2, 2), attention_head_dim=(16, 16, 8),
                        self_attention=(True, False, False), style_encoder_channels=(16, 32, 64),
                        mask_embed_size=16)
    model = IdFaceModel(config)
    randomise_zero_init(model)
    s = config.image_size
    lm = face_layout(s)
    mask = onehot(lm[None])
    with torch.no_grad():   # two style faces (random images, same layout): codes from the encoder
        codes, _ = model.encode_style(torch.rand(2, 3, s, s) * 2 - 1, mask.expand(2, -1, -1, -1))
        contexts = model.context(codes, model.identity_token(torch.randn(1, config.identity_dim)))
    context = contexts[:1]
    generator = model.generator
    opt = torch.optim.Adam(generator.parameters(), lr=1e-2)
    for step in range(40):
        _, layers = generator(mask, contexts[step % 2:step % 2 + 1], return_attention=True)
        loss = sum(F.binary_cross_entropy_with_logits(
            a.logits[:, :K], F.adaptive_avg_pool2d(mask, a.logits.shape[-2:])) for a in layers) / len(layers)
        opt.zero_grad()
        loss.backward()
        opt.step()
    generator.eval()
    with torch.no_grad():
        inputs = []                                     # each transformer block's input
        hooks = [b.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
                 for b in generator.transformer_blocks]
        generator(mask, context)
        for h in hooks:
            h.remove()
        for name in ("hair", "skin"):
            k = CLASS_INDEX[name]
            swapped = context.clone()
            swapped[0, k] = contexts[1, k]                  # this class's code from face B
            kv, kv_swapped = generator.fold_context(context), generator.fold_context(swapped)
            for i, block in enumerate(generator.transformer_blocks):
                x = inputs[i]
                r = x.shape[-1]
                region = F.interpolate(mask[:, k:k + 1], size=(r, r), mode="area")[0, 0] > 0.99
                outside = F.interpolate(mask[:, k:k + 1], size=(r, r), mode="area")[0, 0] < 0.01
                diff = (block(x, kv_swapped[i])[0] - block(x, kv[i])[0]).abs().mean(1)[0]
                ratio = diff[region].mean() / diff[outside].mean()
                assert ratio > 3, f"{name}, stage {i}: block change inside / outside = {ratio:.2f}"
            region = torch.from_numpy(lm == k)
            diff = (generator(mask, swapped) - generator(mask, context)).abs().mean(1)[0]
            ratio = diff[region].mean() / diff[~region].mean()
            assert ratio > 1.2, f"{name}: image change inside / outside = {ratio:.2f}"


def test_identity_film_path_and_checkpoints_without_it(tmp_path):
    """identity_film adds one zero-initialised Linear(token) -> (scale, shift) per transformer
    block: at init the token changes nothing through it; with weights it does. A checkpoint whose
    config.json predates the field loads as before (no FiLM tensors), strictly."""
    cfg = get_config("tiny")
    assert cfg.identity_film
    model = IdFaceModel(cfg).eval()
    films = [b.identity_film for b in model.generator.transformer_blocks]
    assert all(f is not None and not f.weight.any() and not f.bias.any() for f in films)
    mask, image, emb = tiny_inputs(cfg, batch=1)
    with torch.no_grad():
        for f in films:
            f.weight.normal_(std=0.1)
        a = model(mask, image, identity_embedding=emb)
        b = model(mask, image, identity_embedding=torch.randn_like(emb))
    assert (a - b).abs().mean() > 1e-4

    old = IdFaceModel(get_config("tiny", identity_film=False))
    assert not any("identity_film" in k for k in old.state_dict())
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["identity_film"]                                       # as written before the field existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = IdFaceModel.from_pretrained(str(tmp_path / "old"))
    assert loaded.config.identity_film is False
    with torch.no_grad():
        assert torch.equal(loaded(mask, image, identity_embedding=emb), old.eval()(mask, image, identity_embedding=emb))
