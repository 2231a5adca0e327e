import pytest
import torch
import torch.nn.functional as F

from idface import weights
from idface.errors import UnavailableError
from idface.model.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from idface.training import losses as L


def outputs(*logit_values):
    return [[torch.full((2, 4, 3, 3), 0.5), torch.full((2, 1, 3, 3), v)] for v in logit_values]


def test_hinge_losses_match_their_definition():
    real, fake = outputs(2.0, 0.5), outputs(-2.0, 0.0)
    # relu(1 - real) = 0, 0.5 ; relu(1 + fake) = 0, 1 ; mean over the two scales
    assert L.hinge_d_loss(real, fake).item() == pytest.approx((0 + 0 + 0.5 + 1) / 2)
    assert L.hinge_g_loss(fake).item() == pytest.approx(-(-2.0 + 0.0) / 2)


def test_feature_matching_is_l1_of_intermediates_only():
    a = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2)]]
    b = [[torch.ones(1, 2, 4, 4), torch.full((1, 1, 2, 2), 9.0)]]  # logits differ too: ignored
    assert L.feature_matching_loss(a, b).item() == pytest.approx(1.0)
    assert L.feature_matching_loss(a, a).item() == 0.0


def test_attention_loss_rewards_attention_on_the_class_region():
    mask = torch.zeros(1, 3, 8, 8)
    mask[0, 0, :, :4] = 1
    mask[0, 1, :, 4:] = 1  # class 2 absent
    # logits [B, T=4 (3 classes + identity), 4, 4]
    target = F.interpolate(mask, size=(4, 4), mode="area")
    good = torch.cat([(target * 2 - 1) * 10, torch.zeros(1, 1, 4, 4)], 1)
    bad = -good
    assert L.attention_loss([good], mask) < 0.01 < L.attention_loss([bad], mask)
    # the identity token (last) does not count
    good_id = good.clone(); good_id[:, -1] = 100.0
    assert L.attention_loss([good_id], mask) == pytest.approx(L.attention_loss([good], mask).item())
    with pytest.raises(ValueError):
        L.attention_loss([torch.zeros(1, 2, 4, 4)], mask)


def test_vgg19_unavailable_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("IDFACE_VGG19", str(tmp_path / "nope.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UnavailableError, match="nope.pth"):
        L.load_vgg19()


def test_vgg_perceptual_loss_with_local_weights(tmp_path, monkeypatch):
    """The loading path and the loss on a file in torchvision's format (random weights: the
    ImageNet file cannot be downloaded here)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path / L.VGG19_FILENAME
    features = make_layers(cfgs["E"], batch_norm=False)  # torchvision's VGG19 "features", random init
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    monkeypatch.setenv("IDFACE_VGG19", str(path))
    vgg = L.load_vgg19()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = x.clone().requires_grad_(True)
    assert L.vgg_perceptual_loss(vgg, y, x).item() == 0.0
    z = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    loss = L.vgg_perceptual_loss(vgg, z, x)
    loss.backward()
    assert loss.item() > 0 and z.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vgg.parameters())


class CosRecognizer:
    """A differentiable stand-in with the Recognizer's embed_frame signature."""

    name = "mean-colour"

    def embed_frame(self, img):
        return img.mean(dim=(2, 3))


def test_identity_loss_is_one_minus_cosine():
    rec = CosRecognizer()
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    target = rec.embed_frame((img + 1) / 2)
    assert L.identity_loss(rec, img, target).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.zeros_like(target); other[:, 0] = 1
    expected = (1 - F.cosine_similarity(target, other, dim=1)).mean()
    assert L.identity_loss(rec, img, other).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("preset", ["tiny", "paper-256"])
def test_discriminator_two_scales_with_features(preset):
    cfg = DiscriminatorConfig.preset(preset)
    disc = MultiScaleDiscriminator(cfg)
    size = 64
    out = disc(torch.zeros(2, 19, size, size), torch.zeros(2, 3, size, size))
    assert len(out) == cfg.num_scales == 2
    for s, scale in enumerate(out):
        assert len(scale) == cfg.num_layers + 1
        assert scale[-1].shape[:2] == (2, 1)
    assert out[1][0].shape[-1] < out[0][0].shape[-1]  # second scale sees the pooled input
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in convs)
