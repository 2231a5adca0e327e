"""IdFacePipeline: outputs, caching (a mask edit reruns only the generator), per-class mixing in
one call, determinism, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from idface.errors import InputError
from idface.images import load_image
from idface.labels import CLASS_INDEX, NUM_CLASSES
from idface.model import IdFaceModel
from idface.pipeline import TOKEN_NAMES, IdFacePipeline, StyleCodes

S = 64  # the tiny preset's resolution


@pytest.fixture(scope="module")
def model() -> IdFaceModel:
    torch.manual_seed(0)
    model = IdFaceModel("tiny").eval()
    with torch.no_grad():  # as if trained: zero-initialised projections non-zero, defaults distinct
        for block in model.generator.transformer_blocks:
            block.proj_out.weight.normal_(std=0.2)
        model.identity_projection.null_token.normal_()
    return model


@pytest.fixture
def pipe(model) -> IdFacePipeline:
    return IdFacePipeline(model)


def layout(size: int = S, hair_rows: int | None = None) -> np.ndarray:
    lm = np.full((size, size), CLASS_INDEX["skin"], np.uint8)
    lm[: hair_rows if hair_rows is not None else size // 3] = CLASS_INDEX["hair"]
    lm[size * 3 // 4:, :] = CLASS_INDEX["cloth"]
    lm[size // 2: size // 2 + 4, size // 4: size // 4 + 8] = CLASS_INDEX["l_eye"]
    lm[size // 2: size // 2 + 4, size // 2: size // 2 + 8] = CLASS_INDEX["r_eye"]
    return lm


@pytest.fixture(scope="module")
def faces(faces_dir):
    """Two real photos, squashed to the tiny model's size (the pipeline takes aligned faces)."""
    from PIL import Image

    out = []
    for name in ("astronaut.png", "grace_hopper.jpg"):
        rgb = load_image(faces_dir / name, "style photo")
        out.append(np.asarray(Image.fromarray(rgb).resize((S, S), Image.BILINEAR)))
    return out


def test_result_has_image_attention_and_codes(pipe, faces):
    result = pipe(layout(), style=(faces[0], layout()), identity_embedding=np.ones(128, np.float32))
    assert result.image.shape == (S, S, 3) and result.image.dtype == np.uint8
    assert result.synthetic
    assert list(result.attention) == list(TOKEN_NAMES) and len(TOKEN_NAMES) == NUM_CLASSES + 1
    total = sum(result.attention.values())
    assert np.allclose(total, 1.0, atol=1e-4)            # probabilities over the 20 tokens
    assert result.codes.shape == (NUM_CLASSES, pipe.config.code_dim)
    assert result.presence[CLASS_INDEX["hair"]] and not result.presence[CLASS_INDEX["hat"]]


def test_layer_attention_on_request(pipe, faces):
    result = pipe(layout(), style=(faces[0], layout()), layer_attention=True)
    assert len(result.layer_attention) == pipe.config.num_stages
    for i, maps in enumerate(result.layer_attention):
        r = pipe.config.base_resolution * 2**i
        assert maps["identity"].shape == (r, r)
        assert np.allclose(sum(maps.values()), 1.0, atol=1e-4)


def test_outputs_are_deterministic(model, faces):
    a = IdFacePipeline(model)(layout(), style=(faces[0], layout()), identity_embedding=np.arange(128.0))
    b = IdFacePipeline(model)(layout(), style=(faces[0], layout()), identity_embedding=np.arange(128.0))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.codes, b.codes)


def test_mask_edit_reruns_only_the_generator(pipe, faces):
    calls = {"style": 0, "identity": 0}
    hooks = [pipe.model.style_encoder.register_forward_hook(lambda *a: calls.__setitem__("style", calls["style"] + 1)),
             pipe.model.identity_projection.register_forward_hook(
                 lambda *a: calls.__setitem__("identity", calls["identity"] + 1))]
    try:
        style, emb = (faces[0], layout()), np.linspace(-1, 1, 128)
        first = pipe(layout(), style=style, identity_embedding=emb)
        edited = pipe(layout(hair_rows=S // 2), style=style, identity_embedding=emb)   # more hair
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"style": 1, "identity": 1}
    info = pipe.cache_info()
    assert info["style"]["hits"] == 1 and info["identity"]["hits"] == 1 and info["context"]["hits"] == 1
    assert not np.array_equal(first.image, edited.image)
    # the cached path gives exactly what a fresh pipeline computes for the edited mask
    fresh = IdFacePipeline(pipe.model)(layout(hair_rows=S // 2), style=style, identity_embedding=emb)
    assert np.array_equal(fresh.image, edited.image)


def test_per_class_mixing_is_one_call_and_equals_manual_mixing(pipe, faces):
    a, b = pipe.encode_style(faces[0], layout()), pipe.encode_style(faces[1], layout())
    mixed = pipe(layout(), style=(faces[0], layout()), class_sources={"hair": (faces[1], layout()), "l_eye": b})
    manual = a.codes.numpy().copy()
    for name in ("hair", "l_eye"):
        manual[CLASS_INDEX[name]] = b.codes[CLASS_INDEX[name]].numpy()
    by_hand = pipe(layout(), style=manual)
    assert np.array_equal(mixed.codes, manual)
    assert np.array_equal(mixed.image, by_hand.image)
    assert not np.array_equal(mixed.image, pipe(layout(), style=a).image)


def test_identity_token_changes_the_image(pipe, faces):
    style = (faces[0], layout())
    none = pipe(layout(), style=style)
    one = pipe(layout(), style=style, identity_embedding=np.ones(128))
    other = pipe(layout(), style=style, identity_embedding=-np.ones(128))
    assert not np.array_equal(none.image, one.image) and not np.array_equal(one.image, other.image)


def test_inputs_at_another_resolution_are_resized(pipe, faces):
    from PIL import Image

    big = np.asarray(Image.fromarray(faces[0]).resize((2 * S, 2 * S)))
    result = pipe(layout(2 * S), style=(big, layout(2 * S)))
    assert result.image.shape == (S, S, 3)


def test_bf16_stays_close_to_fp32(model, faces):
    style, lm = (faces[0], layout()), layout()
    fp32 = IdFacePipeline(model)(lm, style=style).image.astype(int)
    bf16 = IdFacePipeline(model, precision="bf16")(lm, style=style).image.astype(int)
    assert np.abs(fp32 - bf16).mean() < 4          # uint8 levels


@pytest.mark.parametrize("stages", [(False, True, False, True), (True, True, False, False)])
def test_the_fold_plan_follows_the_timing_cache(model, faces, stages, tmp_path, monkeypatch):
    """IDFACE_FOLD=auto with a pre-filled timing cache: the pipeline runs the stages the stored
    timings favour (no measurement), and the image is the plain generator's (IDFACE_FOLD=off)."""
    from idface.model.fold_plan import plan_key
    from idface.weights import forget_timing_choices, save_timing_choice

    monkeypatch.setenv("IDFACE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("IDFACE_FOLD", "auto")
    forget_timing_choices()
    try:
        save_timing_choice(plan_key(model.config, "fp32"), {"timings": [
            {"plain_s": 1.0, "folded_s": 0.5 if fold else 2.0, "tokens": 16} for fold in stages]})
        forget_timing_choices()                           # read back from the file, as a new process
        pipe = IdFacePipeline(model)
        style, emb = (faces[0], layout()), np.linspace(-1, 1, 128)
        result = pipe(layout(), style=style, identity_embedding=emb)
        assert pipe.fold_plan.stages == stages and pipe.fold_plan.decided_by == "cached timing"
        assert result.info["folded_stages"] == list(stages)
        monkeypatch.setenv("IDFACE_FOLD", "off")
        plain = IdFacePipeline(model)
        reference = plain(layout(), style=style, identity_embedding=emb)
        assert plain.fold_plan.stages == (False,) * len(stages)
    finally:
        forget_timing_choices()
    assert np.abs(result.image.astype(int) - reference.image.astype(int)).max() <= 1   # float32 rounding
    for name in TOKEN_NAMES:
        assert np.abs(result.attention[name] - reference.attention[name]).max() < 1e-4


def test_a_bad_fold_setting_stops_the_pipeline_in_one_line(model, monkeypatch):
    monkeypatch.setenv("IDFACE_FOLD", "sometimes")
    with pytest.raises(InputError, match=r"^IDFACE_FOLD='sometimes' is not one of auto, on, off"):
        IdFacePipeline(model)


@pytest.mark.parametrize("call, message", [
    (lambda p, f: p(layout()), "a style is needed"),
    (lambda p, f: p(layout(), style=(f[0], layout(32))), "same aligned face"),
    (lambda p, f: p(layout(), style=(f[0][..., 0], layout())), r"RGB uint8 \[H, W, 3\]"),
    (lambda p, f: p(layout(), style=np.zeros((19, 7))), "style codes must have shape"),
    (lambda p, f: p(layout(), style=(f[0], layout()), identity_embedding=np.ones(512)),
     "512 dims; this checkpoint expects 128"),
    (lambda p, f: p(layout(), style=(f[0], layout()), identity_embedding=np.full(128, np.nan)), "NaN"),
    (lambda p, f: p(np.full((S, S), 40), style=(f[0], layout())), "unknown class indices 40"),
    (lambda p, f: p(layout(), style=(f[0], layout()), class_sources={"beard": (f[1], layout())}),
     "unknown class 'beard'"),
])
def test_bad_input_is_one_clear_error(pipe, faces, call, message):
    with pytest.raises(InputError, match=message):
        call(pipe, faces)


def test_from_pretrained_and_caches_are_bounded(model, faces, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    pipe = IdFacePipeline.from_pretrained(str(tmp_path / "ckpt"), cache_size=2)
    assert pipe.source.kind == "explicit-local"
    for shift in range(4):
        pipe.encode_style(np.roll(faces[0], shift, axis=1), layout())
    assert pipe.cache_info()["style"]["size"] == 2
    assert isinstance(pipe.encode_style(faces[0], layout()), StyleCodes)
    pipe.clear_caches()
    assert pipe.cache_info()["style"]["size"] == 0


def test_pipeline_leaves_a_training_model_trainable(faces):
    model = IdFaceModel("tiny").train()
    IdFacePipeline(model)(layout(), style=(faces[0], layout()))
    assert model.training and all(p.requires_grad for p in model.parameters())



def test_checkpoint_label_shows_no_server_path(tmp_path):
    from idface.engine import public_label
    from idface.weights import REPO_ROOT

    outside = tmp_path / "fitted-face"
    assert public_label(f"folder {outside}", outside) == "folder fitted-face"
    inside = REPO_ROOT / "weights" / "idface-demo"
    assert public_label(f"bundled weights {inside} (demo)", inside) == "bundled weights weights/idface-demo (demo)"
    assert public_label("Hub org/name@main", None) == "Hub org/name@main"


def test_local_edits_keep_the_unedited_rendering_away_from_the_edit(model, faces):
    """A mask edit (more hair) is composited: beyond the blend ramp the image is exactly the
    unedited rendering, near the changed labels exactly the generator's raw edited one; after
    the first stroke the unedited rendering comes from the cache (one generator pass a stroke)."""
    from idface.pipeline import LOCAL_EDIT_FEATHER, LOCAL_EDIT_GROW, edit_blend_weight

    pipe = IdFacePipeline(model)
    passes = []
    hook = pipe.generator.register_forward_hook(lambda *a: passes.append(1))
    try:
        style, emb = (faces[0], layout()), np.linspace(-1, 1, 128)
        edited_lm = layout(hair_rows=S // 2)
        local = pipe(edited_lm, style=style, identity_embedding=emb)
        assert len(passes) == 2                              # the edit + the unedited map, once
        again = pipe(layout(hair_rows=S // 2 + 2), style=style, identity_embedding=emb)
        assert len(passes) == 3 and pipe.cache_info()["unedited"]["hits"] == 1
    finally:
        hook.remove()
    raw = pipe(edited_lm, style=style, identity_embedding=emb, local_edits=False).image
    unedited = pipe(layout(), style=style, identity_embedding=emb).image
    changed = edited_lm != layout()
    w = edit_blend_weight(changed, LOCAL_EDIT_GROW * S, LOCAL_EDIT_FEATHER * S)
    far, near = w == 0, w == 1
    assert far.sum() > S * S // 3 and near.sum() >= changed.sum()
    assert np.array_equal(local.image[far], unedited[far]) and np.array_equal(local.image[near], raw[near])
    assert not np.array_equal(raw[far], unedited[far])       # the raw edit did change the rest
    assert 0 < local.info["kept_unedited_fraction"] < 1 and again.info["kept_unedited_fraction"] > 0
    # off per pipeline; a whole new layout and style codes (no label map to compare) are not composited
    off = IdFacePipeline(model, local_edits=False)(edited_lm, style=style, identity_embedding=emb).image
    assert np.array_equal(off, raw)
    new_layout = np.full((S, S), CLASS_INDEX["hair"], np.uint8)
    assert np.array_equal(pipe(new_layout, style=style, identity_embedding=emb).image,
                          pipe(new_layout, style=style, identity_embedding=emb, local_edits=False).image)
    codes = pipe.encode_style(*style)
    assert pipe(edited_lm, style=codes, identity_embedding=emb).info["kept_unedited_fraction"] == 0


def test_edit_blend_weight_ramps_from_the_change():
    from idface.pipeline import edit_blend_weight

    changed = np.zeros((32, 32), bool)
    changed[16, 16] = True
    w = edit_blend_weight(changed, 2, 4)
    assert w[16, 16] == 1 and w[16, 18] == 1 and w[16, 28] == 0 and 0 < w[16, 20] < 1
    assert np.all(np.diff(w[16, 16:]) <= 0)                  # falls monotonically with distance
