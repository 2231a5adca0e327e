"""The injection objective (idface.training.injection + the trainer's generator_losses) on the tiny
preset: which samples get a foreign identity token, which image each loss compares with, and a
short run in which the token measurably moves a recognizer's embedding of the output."""

import pytest
import torch
import torch.nn.functional as F

from idface.training import losses as L
from idface.tensors import onehot
from idface.training.injection import (
    UNKNOWN_IDENTITY_BASE, IdentityPool, PoolConfig, build_identity_pool, held_out, identity_keys, sample_tokens, slerp,
)
from idface.training.train import Trainer

from test_train import recognizer_name, tiny_config

needs_recognizer = pytest.mark.skipif(recognizer_name() == "none", reason="no offline recognizer here")


def toy_pool() -> IdentityPool:
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(6, 8), dim=-1)
    return IdentityPool(emb, torch.tensor([0, 0, 1, 1, 2, 2]), [f"p{i}" for i in range(6)])


def test_foreign_tokens_come_from_other_people_in_the_share_asked_for():
    pool = toy_pool()
    own = torch.randn(400, 8)
    keys = torch.arange(400) % 3
    gen = torch.Generator().manual_seed(1)
    token, foreign = sample_tokens(pool, own, keys, fraction=0.3, interpolate=0.0, generator=gen)
    assert 0.22 < foreign.float().mean() < 0.38
    assert torch.equal(token[~foreign], own[~foreign])                       # own rows untouched
    for i in torch.nonzero(foreign).flatten():
        match = (pool.embeddings - token[i]).norm(dim=1) < 1e-6
        assert match.any() and not (pool.keys[match] == keys[i]).any()       # another person's embedding
    none, foreign0 = sample_tokens(pool, own, keys, fraction=0.0, interpolate=0.0)
    assert not foreign0.any() and torch.equal(none, own)


def test_interpolated_tokens_lie_between_two_other_people():
    pool = toy_pool()
    own = torch.randn(50, 8)
    keys = torch.zeros(50, dtype=torch.long)                                  # person 0: pool rows 2..5 only
    token, foreign = sample_tokens(pool, own, keys, fraction=1.0, interpolate=1.0, generator=torch.Generator().manual_seed(2))
    assert foreign.all()
    others = F.normalize(pool.embeddings[2:], dim=-1)                          # people 1 and 2
    direction = F.normalize(token, dim=-1)
    # each token is a unit vector in the span of two of those embeddings (an arc between them)
    residual = []
    for row in direction:
        errs = []
        for a in range(4):
            for b in range(4):
                basis = torch.stack([others[a], others[b]], 1)                # [D, 2]
                coef = torch.linalg.lstsq(basis, row[:, None]).solution
                errs.append(float((basis @ coef - row[:, None]).norm()))
        residual.append(min(errs))
    assert max(residual) < 1e-4


def test_a_person_alone_in_the_pool_keeps_its_own_token():
    pool = IdentityPool(torch.randn(2, 8), torch.tensor([5, 5]), ["a", "b"])
    own = torch.randn(3, 8)
    token, foreign = sample_tokens(pool, own, torch.tensor([5, 5, 5]), fraction=1.0, interpolate=0.5)
    assert not foreign.any() and torch.equal(token, own)


def test_identity_keys_and_holdout_names():
    keys = identity_keys(torch.tensor([3, -1, -1]), torch.tensor([0, 7, 8]))
    assert keys.tolist() == [3, UNKNOWN_IDENTITY_BASE + 7, UNKNOWN_IDENTITY_BASE + 8]
    assert held_out("obama3", ["obama3"]) and held_out("obama3_2", ["obama3"]) and not held_out("obama", ["obama3"])
    with pytest.raises(Exception, match="unknown identity_pool"):
        PoolConfig.from_dict({"view": 2})


@needs_recognizer
def test_pool_holds_views_of_every_photo_but_the_held_out(prepared_64, tmp_path):
    from idface.identity.registry import get_recognizer
    from idface.training.config import REPO_ROOT
    from idface.training.data import AugmentConfig, FaceMaskDataset

    ds = FaceMaskDataset.from_prepared(prepared_64, "train", 64, AugmentConfig(flip=0.5, brightness=0.2))
    first = ds.samples[0].image.stem
    pool = build_identity_pool(ds, get_recognizer("dlib-resnet"),
                               PoolConfig(views=2, holdout=[first], photos=[{"path": "assets/faces/biden.jpg", "identity": 999}]),
                               base=REPO_ROOT)
    assert len(pool) == 3 * (len(ds) - 1) + 1
    assert not any(s.startswith(f"{first} ") for s in pool.sources) and pool.sources[-1] == "photo biden.jpg"
    assert int(pool.keys[-1]) == 999 and pool.embeddings.shape[1] == 128
    # augmented views of a photo differ from the plain one, but little
    d = (pool.embeddings[1] - pool.embeddings[0]).norm()
    assert 0 < d < 0.6


@needs_recognizer
def test_foreign_samples_compare_appearance_with_A_and_identity_with_B(prepared_64, tmp_path):
    cfg = tiny_config(prepared_64, tmp_path / "run", injection_fraction=1.0,
                      loss_weights={"l1": 1.0, "identity": 1.0, "injection": 1.0, "injection_away": 1.0})
    trainer = Trainer(cfg, resume="none", progress=False)
    batch = next(trainer.micro_batches())
    real, label = batch["image"], batch["label"]
    keys = identity_keys(batch["identity"], batch["index"])
    torch.manual_seed(5)
    terms, fake = trainer.generator_losses(real, label, keys)
    assert "g_inj" in terms and "g_away" in terms and "g_id" not in terms   # every sample foreign
    # replay the same draw to see which tokens went in
    torch.manual_seed(5)
    emb = trainer.embed(real)
    token, foreign = sample_tokens(trainer.pool, emb, keys, 1.0, trainer.pool_cfg.interpolate)
    assert foreign.all() and not torch.allclose(token, emb)
    with torch.no_grad():
        expected = trainer.G(onehot(label, 19), real, identity_embedding=token)
    assert torch.allclose(fake, expected, atol=1e-5)                        # generated with B's token
    assert torch.allclose(terms["g_l1"], L.l1_loss(fake, real))             # appearance: vs A
    fake_emb = L.embed_generated(trainer.recognizer, fake)
    assert torch.allclose(terms["g_inj"], L.cosine_loss(fake_emb, token), atol=1e-5)       # identity: vs B
    assert torch.allclose(terms["g_away"], L.away_loss(trainer.recognizer, fake_emb, emb, cfg.injection_margin), atol=1e-5)
    # own-token samples: identity loss against their own photo, no injection terms
    cfg0 = tiny_config(prepared_64, tmp_path / "run0", injection_fraction=0.0, loss_weights={"l1": 1.0, "identity": 1.0})
    trainer0 = Trainer(cfg0, resume="none", progress=False)
    assert trainer0.pool is None
    terms0, fake0 = trainer0.generator_losses(real, label, keys)
    assert "g_inj" not in terms0
    assert torch.allclose(terms0["g_id"], L.identity_loss(trainer0.recognizer, fake0, trainer0.embed(real)), atol=1e-5)


def test_away_loss_is_a_hinge_on_the_recognizers_own_rule():
    class Dist:
        higher_is_more_similar, threshold = False, 0.6

    class Cos:
        higher_is_more_similar, threshold = True, 0.3

    src = torch.tensor([[1.0, 0.0]])
    near, far = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.0, 1.0]])
    assert float(L.away_loss(Dist, near, src, 0.1)) > 0 and float(L.away_loss(Dist, far, src, 0.1)) == 0
    assert float(L.away_loss(Cos, near, src, 0.1)) > 0 and float(L.away_loss(Cos, far, src, 0.1)) == 0


@pytest.mark.slow
@needs_recognizer
def test_short_injection_run_makes_the_token_move_the_recognizers_embedding(tmp_path):
    """Tiny preset on the six bundled photos (four people, so the tokens differ: the synthetic test
    faces all embed alike). Before training the identity path is zero and the proj_out layers are
    zero: the token changes nothing. After 40 steps with a foreign token on every sample, the
    same mask and style with two people's tokens give outputs the recognizer tells apart."""
    import json

    from idface.training.config import REPO_ROOT

    pairs = json.loads((REPO_ROOT / "configs" / "demo.json").read_text())["data"]["test_pairs"]
    cfg = tiny_config(tmp_path, tmp_path / "run", data={"pairs": pairs}, injection_fraction=1.0, max_steps=40,
                      decay_steps=0, augment={"flip": 0.0}, lr_g=1e-3, lr_identity_scale=10.0,
                      identity_pool={"views": 0, "interpolate": 0.0},
                      loss_weights={"l1": 1.0, "identity": 1.0, "injection": 20.0, "injection_away": 0.0,
                                    "adversarial": 0.0, "feature_matching": 0.0, "attention": 0.0})
    trainer = Trainer(cfg, resume="none", progress=False)
    item = trainer.test_set[0]
    real, mask = item["image"][None], onehot(item["label"][None], 19)
    pool = trainer.pool
    j = int(torch.nonzero(pool.keys != pool.keys[0]).flatten()[-1])
    tokens = pool.embeddings[[0, j]]                                           # two different people

    def moved() -> float:
        """Recognizer distance between the outputs made with the two tokens."""
        with torch.no_grad():
            out = trainer.G_plain(mask.expand(2, -1, -1, -1), real.expand(2, -1, -1, -1), identity_embedding=tokens)
            e = trainer.recognizer.embed_frame(((out + 1) / 2).clamp(0, 1)).float()
        return float((e[0] - e[1]).norm())

    assert moved() < 1e-6
    trainer.train()
    assert moved() > 0.02        # measured 0.07-0.12 (dlib's same-person threshold is 0.6)
