"""ArcFace IR-SE50 (512-d) as a Recognizer ("arcface"), the recognizer the paper family uses.

Architecture: facexlib's `Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se")` (imported, not
copied), weights file `recognition_arcface_ir_se50.pth` (facexlib's release, trained by TreB1eN's
InsightFace_Pytorch on MS1M). Input: 112x112 RGB on InsightFace's ArcFace template, normalised to
[-1, 1]; output: L2-normalised 512-d embedding; comparison: cosine similarity.

Weights are looked up, in order:
  1. local folders: $IDFACE_WEIGHTS_DIR, weights/facexlib/, facexlib's model_rootpath
     (site-packages/facexlib/weights, or $IDFACE_FACEXLIB_DIR);
  2. a Hugging Face Hub mirror repo ($IDFACE_ARCFACE_REPO, default DEFAULT_MIRROR_REPO) through
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
import shutil
import socket
from pathlib import Path

import torch

from idface.errors import UnavailableError, WeightsNotFoundError
from idface.faces.detect import facexlib_model_rootpath, facexlib_weight_path, local_weight_dirs
from idface.identity.base import Recognizer

NAME = "arcface"
INPUT_SIZE = 112
EMBEDDING_DIM = 512
WEIGHTS_FILE = "recognition_arcface_ir_se50.pth"
RELEASE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth"
MIRROR_REPO_ENV = "IDFACE_ARCFACE_REPO"
MIRROR_REVISION_ENV = "IDFACE_ARCFACE_REVISION"  # pin the mirror to a commit (Spaces: always)
DEFAULT_MIRROR_REPO = "idface/facexlib-weights"  # the project's mirror of facexlib's weight files
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


def mirror_repo() -> str:
    return os.environ.get(MIRROR_REPO_ENV) or DEFAULT_MIRROR_REPO


def downloads_allowed() -> bool:
    off = {"1", "true", "yes", "on"}
    return not (os.environ.get("HF_HUB_OFFLINE", "").lower() in off or os.environ.get("IDFACE_OFFLINE", "").lower() in off)


def host_reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Cheap check before a download, so an unreachable host costs milliseconds, not retries."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _install(src: Path) -> Path:
    """Copy a file fetched from the mirror into facexlib's model_rootpath (where facexlib looks)."""
    dst_dir = facexlib_model_rootpath()
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / WEIGHTS_FILE
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return dst
    except OSError:
        return src  # read-only install: use the HF cache copy in place


def locate_arcface_weights(download: bool | None = None, hf_cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of recognition_arcface_ir_se50.pth, or WeightsNotFoundError listing every place tried.

    download: allow network steps (default: unless HF_HUB_OFFLINE / IDFACE_OFFLINE is set)."""
    download = downloads_allowed() if download is None else download
    tried: list[str] = []
    local = facexlib_weight_path(WEIGHTS_FILE)
    if local is not None:
        return local
    tried.append("local folders " + ", ".join(str(d) for d in local_weight_dirs()))

    repo = mirror_repo()
    from huggingface_hub import hf_hub_download

    from urllib.parse import urlparse

    from huggingface_hub import constants

    online = download and host_reachable(urlparse(constants.ENDPOINT).hostname or "huggingface.co")
    try:
        cached = hf_hub_download(repo, WEIGHTS_FILE, revision=os.environ.get(MIRROR_REVISION_ENV) or None,
                                 cache_dir=hf_cache_dir, local_files_only=not online)
        return _install(Path(cached))
    except Exception as err:  # not cached / not reachable / no such repo
        how = "Hub" if online else "HF cache"
        tried.append(f"{how} {repo}/{WEIGHTS_FILE} ({type(err).__name__})")

    if download and host_reachable("github.com"):
        dst = facexlib_model_rootpath() / WEIGHTS_FILE
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(RELEASE_URL, str(dst), progress=False)
            return dst
        except Exception as err:
            tried.append(f"{RELEASE_URL} ({type(err).__name__}: {err})")
    else:
        tried.append(f"{RELEASE_URL} ({'downloads off' if not download else 'github.com unreachable'})")
    raise WeightsNotFoundError(f"ArcFace weights {WEIGHTS_FILE} not found; tried " + "; ".join(tried))


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
            f"(`hf download {mirror_repo()} {WEIGHTS_FILE}` or {RELEASE_URL})"
        ) from None
    return model.eval().to(device)


def arcface_status() -> str:
    """"available" or why not, without any network access."""
    try:
        locate_arcface_weights(download=False)
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
            path = Path(weights) if weights is not None else locate_arcface_weights(download)
        except WeightsNotFoundError as err:
            raise UnavailableError(f"arcface unavailable: {err}") from None
        self.weights_path = path
        super().__init__(load_arcface_ir_se50(path, device), device)

    def _forward(self, chips: torch.Tensor) -> torch.Tensor:
        # [B, 3, 112, 112] in [0, 1] -> [-1, 1] -> [B, 512], unit length
        return self.model(chips * 2.0 - 1.0)
