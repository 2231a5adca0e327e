"""The training losses of shared/design/method.md, one small function each.

Weights are not applied here: the trainer multiplies each term by its weight from the config
(LossWeights), so a term can be switched off by a zero weight and logged unweighted.

Images are [B, 3, H, W] in [-1, 1] (the generator's tanh range) unless a function says otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from idface import weights
from idface.errors import UnavailableError  # noqa: F401  (callers catch L.UnavailableError)
from idface.weights import VGG19_FILENAME  # noqa: F401  (the file name callers write)

log = logging.getLogger(__name__)


@dataclass
class LossWeights:
    """Multipliers of each term (method.md: CA2SIS defaults; identity weight inferred)."""

    adversarial: float = 1.0
    feature_matching: float = 10.0
    perceptual: float = 10.0
    attention: float = 1.0
    identity: float = 1.0       # own-token samples: 1 - cos(E_id(fake), E_id(A))
    l1: float = 0.0  # plain pixel L1; off in the paper, useful for tiny data sets
    # foreign-token samples (the injection objective, idface.training.injection): appearance terms
    # still compare with A; these pull the recognizer's embedding towards the token's person B ...
    injection: float = 1.0      # 1 - cos(E_id(fake), E_B)
    # ... and push it past the recognizer's same-person threshold away from A (hinge)
    injection_away: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# adversarial (hinge) and feature matching

def hinge_d_loss(real_outputs: Sequence[Sequence[torch.Tensor]], fake_outputs: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Discriminator hinge loss, mean over scales: relu(1 - D(real)) + relu(1 + D(fake)).

    real_outputs / fake_outputs: per scale, the discriminator's list whose last entry is the
    patch logits [B, 1, h, w]."""
    total = 0.0
    for real, fake in zip(real_outputs, fake_outputs):
        total = total + F.relu(1.0 - real[-1].float()).mean() + F.relu(1.0 + fake[-1].float()).mean()
    return total / len(real_outputs)


def hinge_g_loss(fake_outputs: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Generator hinge loss, mean over scales: -D(fake)."""
    total = 0.0
    for fake in fake_outputs:
        total = total - fake[-1].float().mean()
    return total / len(fake_outputs)


def feature_matching_loss(real_outputs: Sequence[Sequence[torch.Tensor]], fake_outputs: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features on real and generated images:
    summed over layers, mean over scales (real features are targets, no gradient)."""
    total = 0.0
    for real, fake in zip(real_outputs, fake_outputs):
        for real_feat, fake_feat in zip(real[:-1], fake[:-1]):
            total = total + F.l1_loss(fake_feat.float(), real_feat.detach().float())
    return total / len(real_outputs)


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(fake.float(), real.float())


# --------------------------------------------------------------------------------------------
# VGG19 perceptual loss

VGG19_LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in vgg19.features
VGG19_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_vgg19_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only: plain tensors, never arbitrary unpickling
    return torch.load(str(path), map_location="cpu", weights_only=True)


class VGG19Features(nn.Module):
    """Frozen VGG19 'features' up to relu5_1; returns the five relu*_1 activations."""

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # only the convolutional part (building vgg19() would also initialise its 120M-parameter classifier)
        features = make_layers(cfgs["E"], batch_norm=False)[: VGG19_LAYERS[-1] + 1]
        own = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
        own = {k: v for k, v in own.items() if int(k.split(".")[0]) <= VGG19_LAYERS[-1]}
        features.load_state_dict(own, strict=True)
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # always eval: no batch norm here, but keep it frozen
        return super().train(False)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        # img [B, 3, H, W] in [-1, 1]
        x = ((img.float() + 1) / 2 - self.mean) / self.std
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_LAYERS:
                outs.append(x)
        return outs


def load_vgg19(device: str | torch.device = "cpu", download: bool | None = None) -> VGG19Features:
    """torchvision's ImageNet VGG19 through idface.weights (local file or cache first, fetched once
    when downloads are allowed), or UnavailableError saying what is missing and how to get it."""
    return VGG19Features(_load_vgg19_state(weights.vgg19_weights_path(download))).to(device)


def vgg_perceptual_loss(vgg: VGG19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """sum_l w_l * L1(VGG_l(fake), VGG_l(real)), w = 1/32, 1/16, 1/8, 1/4, 1."""
    fake_feats = vgg(fake)
    with torch.no_grad():
        real_feats = vgg(real)
    total = 0.0
    for w, f, r in zip(VGG19_LAYER_WEIGHTS, fake_feats, real_feats):
        total = total + w * F.l1_loss(f, r.detach())
    return total


# --------------------------------------------------------------------------------------------
# attention loss

def attention_loss(attention, onehot: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits between each class token's head-averaged pre-softmax cross-attention
    logits and that class's mask, downsampled to the layer's resolution (area average, so
    boundary pixels get fractional targets); mean over classes, pixels and layers.

    attention: per cross-attention layer, the generator's LayerAttention (or its .logits),
    head-averaged logits [B, T, h, w] where tokens 0..C-1 are the class tokens and the last
    (identity) token is left out: it has no mask. onehot: [B, C, H, W].
    """
    if not attention:
        raise ValueError("attention_loss needs at least one cross-attention layer's logits")
    num_classes = onehot.shape[1]
    total = 0.0
    for layer in attention:
        logits = getattr(layer, "logits", layer)
        if logits.dim() != 4 or logits.shape[1] < num_classes:
            raise ValueError(f"attention logits must be [B, T >= {num_classes}, h, w]; got {tuple(logits.shape)}")
        class_logits = logits[:, :num_classes].float()  # [B, C, h, w]
        target = F.interpolate(onehot.float(), size=class_logits.shape[-2:], mode="area")
        total = total + F.binary_cross_entropy_with_logits(class_logits, target)
    return total / len(attention)


# --------------------------------------------------------------------------------------------
# identity loss

def embed_generated(recognizer, fake: torch.Tensor) -> torch.Tensor:
    """E_id(fake) [B, D] through the recognizer's differentiable aligned crop (embed_frame);
    fake [B, 3, H, W] in [-1, 1]."""
    return recognizer.embed_frame(((fake.float() + 1) / 2).clamp(0, 1)).float()


def cosine_loss(embedding: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(embedding, target)) over rows [B, D]; the target gets no gradient."""
    return (1 - F.cosine_similarity(embedding, target_embedding.float().detach(), dim=1)).mean()


def identity_loss(recognizer, fake: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(E_id(fake), target)): E_id is a frozen recognizer from idface.identity
    applied to the generator-frame image through its differentiable aligned crop (embed_frame).

    fake [B, 3, H, W] in [-1, 1]; target_embedding [B, D] (E_id of the real face, no gradient).
    """
    return cosine_loss(embed_generated(recognizer, fake), target_embedding)


def away_loss(recognizer, embedding: torch.Tensor, source_embedding: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge that pushes E_id(fake) [B, D] past the recognizer's own same-person threshold away
    from the source face A [B, D], by `margin` in the recognizer's score (dlib: Euclidean distance
    >= threshold + margin; cosine recognizers: similarity <= threshold - margin). Zero once there."""
    source = source_embedding.float().detach()
    if recognizer.higher_is_more_similar:
        score = F.cosine_similarity(embedding, source, dim=1)
        return F.relu(score - (recognizer.threshold - margin)).mean()
    distance = (embedding - source).norm(dim=1)
    return F.relu(recognizer.threshold + margin - distance).mean()
