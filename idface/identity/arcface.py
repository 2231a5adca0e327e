"""ArcFace IR-SE50 (512-d) as a Recognizer ("arcface"), the recognizer the paper family uses.

Architecture: facexlib's `Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")` (imported, not
copied), weights file `recognition_arcface_ir_se50.pth` (facexlib's release, trained by TreB1eN's
InsightFace_Pytorch on MS1M). Input: 112x112 RGB on InsightFace's ArcFace template, normalised to
[-1, 1]; output: L2-normalised 512-d embedding; comparison: cosine similarity.

Weights are looked up by idface.weights.arcface_weights_path, in order:
  1. local folders: $IDFACE_WEIGHTS_DIR, weights/facexlib/, facexlib's model_rootpath
     (site-packages/facexlib/weights, or $IDFACE_FACEXLIB_DIR);
  2. a Hugging Face Hub mirror repo ($IDFACE_ARCFACE_REPO, default idface/facexlib-weights) through
     hf_hub_download (the HF cache first; the network when allowed), then copied into facexlib's
     model_rootpath so facexlib finds it too;
  3. facexlib's own release URL on GitHub.
Steps 2 and 3 use the network only when downloads are allowed (not HF_HUB_OFFLINE / IDFACE_OFFLINE)
and the host answers. Without weights the recognizer is reported unavailable with every place
tried; nothing is faked. facexlib's own init_recognition_model hard-codes CUDA, so the model is
built here and loaded on any device with torch.load(weights_only=True).

Threshold: cosine 0.241, the published IR-SE50 threshold at FAR 0.01 (TIP-IM / AMT-GAN /
CLIP2Protect evaluation; 0.145 at FAR 0.1, 0.313 at FAR 0.001). Those were measured on whole,
unaligned 112x112 images; on aligned crops same-person similarities run higher, so this is a
lenient rule here. Recalibrate for a production use.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from idface.errors import UnavailableError, WeightsNotFoundError
from idface.identity.base import Recognizer
from idface.weights import ARCFACE_FILE, ARCFACE_RELEASE_URL, arcface_mirror_repo
from idface.weights import arcface_weights_path

NAME = "arcface"
INPUT_SIZE = 112
EMBEDDING_DIM = 512
WEIGHTS_FILE = ARCFACE_FILE
# Published cosine thresholds for IR-SE50 (unaligned protocol), by false accept rate.
PUBLISHED_THRESHOLDS = {0.1: 0.145, 0.01: 0.241, 0.001: 0.313}
FAR = 0.01
THRESHOLD = PUBLISHED_THRESHOLDS[FAR]
THRESHOLD_SOURCE = (
    "IR-SE50 cosine threshold at FAR 0.01 (0.241) published with the TIP-IM / AMT-GAN / CLIP2Protect "
    "evaluation protocol; measured on whole unaligned 112x112 images, so lenient on aligned crops"
)


def build_arcface_ir_se50() -> torch.nn.Module:
    """facexlib's IR-SE50 backbone, randomly initialised: [B, 3, 112, 112] in [-1, 1] -> [B, 512] unit vectors."""
    from facexlib.recognition.arcface_arch import Backbone

    return Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")


def load_arcface_ir_se50(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build IR-SE50 and load a facexlib-format state dict (strict, weights_only)."""
    model = build_arcface_ir_se50()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UnavailableError(
            f"ArcFace weights at {path} could not be loaded ({type(err).__name__}: {reason[:300]}); the file is "
            f"corrupt, truncated or not a plain state dict: delete it and fetch {WEIGHTS_FILE} again "
            f"(`hf download {arcface_mirror_repo()} {WEIGHTS_FILE}` or {ARCFACE_RELEASE_URL})"
        ) from None
    return model.eval().to(device)


def arcface_status() -> str:
    """"available" or why not, without any network access."""
    try:
        arcface_weights_path(download=False)
        return "available"
    except WeightsNotFoundError as err:
        return str(err)


class ArcFaceRecognizer(Recognizer):
    name = NAME
    template = "arcface"
    input_size = INPUT_SIZE
    embedding_dim = EMBEDDING_DIM
    metric = "cosine"
    threshold = THRESHOLD
    threshold_source = THRESHOLD_SOURCE
    higher_is_more_similar = True

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None,
                 download: bool | None = None) -> None:
        try:
            path = Path(weights) if weights is not None else arcface_weights_path(download)
        except WeightsNotFoundError as err:
            raise UnavailableError(f"arcface unavailable: {err}") from None
        self.weights_path = path
        super().__init__(load_arcface_ir_se50(path, device), device)

    def _forward(self, chips: torch.Tensor) -> torch.Tensor:
        # [B, 3, 112, 112] in [0, 1] -> [-1, 1] -> [B, 512], unit length
        return self.model(chips * 2.0 - 1.0)
